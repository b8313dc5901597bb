"""Shared fixtures for the data tests: tiny MP4s whose frames carry their own index.

Each frame shows its 0-based index as 8 black/white stripes in the top half (robust to H.264
compression), so a test can tell exactly which frame a reader returned. The bottom half is a fine
checkerboard on "sharp" frames and flat grey elsewhere, so the offline sharpness scorer has a clear
favourite among neighbours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
WIDTH, HEIGHT = 64, 48


def frame_image(index: int, sharp: bool = False, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    image = np.full((height, width, 3), 128, np.uint8)
    stripe = width // 8
    for bit in range(8):
        value = 255 if (index >> bit) & 1 else 0
        image[: height // 2, bit * stripe:(bit + 1) * stripe] = value
    if sharp:
        yy, xx = np.mgrid[0:height - height // 2, 0:width]
        image[height // 2:] = (((yy // 2 + xx // 2) % 2) * 255)[..., None].astype(np.uint8)
    return image


def decode_index(image: np.ndarray) -> int:
    height, width = image.shape[:2]
    stripe = width // 8
    bits = [image[2: height // 2 - 2, b * stripe + 2:(b + 1) * stripe - 2].mean() > 127 for b in range(8)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def make_video(path: str | os.PathLike, num_frames: int, fps: int = 10, gop: int = 8,
               sharp: set[int] | None = None, width: int = WIDTH, height: int = HEIGHT,
               faststart: bool = False) -> str:
    import av

    sharp = sharp or set()
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    # faststart puts the index (moov) first, so a truncated file still opens, as a partial download does.
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "crf": "12", "preset": "ultrafast"}
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(index, index in sharp, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


# Videos of the EPIC fixture CSV: 10 fps, 100 frames (10 s). P01_02 is absent and P02_01 is corrupt on purpose.
EPIC_SHARP = {"P01_01": {10}, "P03_01": set()}


def make_epic_videos(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for video_id, sharp in EPIC_SHARP.items():
        make_video(root / f"{video_id}.MP4", 100, fps=10, sharp=sharp)
    (root / "P02_01.MP4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    return root


@pytest.fixture(scope="session")
def epic_videos(tmp_path_factory) -> Path:
    return make_epic_videos(tmp_path_factory.mktemp("epic") / "videos")


@pytest.fixture(scope="session")
def ego4d_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ego4d") / "videos"
    root.mkdir()
    for n in (1, 2):
        make_video(root / f"0a1b2c3d-0000-4000-8000-00000000000{n}.mp4", 100, fps=10)
    return root
