"""MP4 writing with PyAV: near-lossless H.264 so that decoded frames stay close to ``render_state``."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from egoframe.errors import ConfigError

# Tried in order by codec="auto". libx264 is in the PyAV wheels; mpeg4 is the last resort of minimal builds.
CODEC_PREFERENCE = ("libx264", "h264", "mpeg4")


def pick_codec(name: str = "auto") -> str:
    """The encoder to use: ``name`` itself if this PyAV build has it, else the first available of the list."""
    import av

    def available(codec: str) -> bool:
        try:
            av.codec.Codec(codec, "w")
            return True
        except Exception:  # PyAV raises different types for unknown codecs across versions
            return False

    if name != "auto":
        if not available(name):
            raise ConfigError(f"this PyAV build has no encoder {name!r}; use codec='auto'")
        return name
    for codec in CODEC_PREFERENCE:
        if available(codec):
            return codec
    raise ConfigError(f"this PyAV build has none of the encoders {CODEC_PREFERENCE}")


def write_mp4(path: str, frames: Iterable[np.ndarray], fps: int, codec: str = "auto", crf: int = 12,
              pix_fmt: str = "yuv420p") -> None:
    """Encode uint8 (H, W, 3) RGB frames to ``path`` atomically (temp file, then rename).

    One encoder thread: worker processes already use the cores, and x264 output is then reproducible.
    x264 preset "veryfast": at 128 px it is 3x faster than "medium" for the same PSNR (measured 31.7 vs
    31.9 dB at crf 10); the PSNR ceiling comes from 4:2:0 chroma at colour edges, not from the preset.
    """
    import av

    codec = pick_codec(codec)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    h, w = frame.shape[:2]
                    stream = container.add_stream(codec, rate=fps)
                    stream.width, stream.height = w, h
                    stream.pix_fmt = pix_fmt
                    stream.codec_context.thread_count = 1
                    if codec in ("libx264", "h264"):
                        stream.options = {"crf": str(crf), "preset": "veryfast"}
                    else:
                        stream.bit_rate = 8 * w * h * fps  # ~8 bits/pixel: near-transparent for mpeg4
                        stream.codec_context.qmax = 3
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            if stream is None:
                raise ValueError("write_mp4 got no frames")
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_frames(path: str) -> list[np.ndarray]:
    """Decode every frame of a video as uint8 (H, W, 3) RGB (for tests and inspection; small videos only)."""
    import av

    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
