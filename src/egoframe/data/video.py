"""Frame access for curation: seeking PyAV reads of videos, and EPIC-style extracted frame folders.

A curated pair needs a handful of frames (the chosen frame and its ±3 neighbours) from a video of tens
of thousands, so :class:`VideoFrameReader` seeks to the keyframe before each wanted run of frames and
decodes only from there; :func:`decode_sequential` is the plain decode-everything reader the benchmark
compares against. Frame indices are 0-based everywhere in this module.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from egoframe.errors import InputError


def time_to_frame(seconds: float, fps: float) -> int:
    """The 0-based index of the frame shown at ``seconds``: the nearest frame start, halves rounding up.

    (Python's ``round`` rounds halves to even, which would move every other x.5 case down a frame.)
    The 1e-6 absorbs float error in ``seconds * fps`` such as 0.7 * 30 = 20.999999999999996.
    """
    return int(math.floor(seconds * fps + 0.5 + 1e-6))


_EPIC_100_NEW_VIDEO = re.compile(r"^P\d+_1\d\d$")  # PXX_1YY: the EPIC-KITCHENS-100 extension's recordings


def epic_frames_rate(video_id: str) -> int:
    """The rate EPIC-KITCHENS-100 numbered a video's published frames at, whatever the video's own fps:
    50 for the extension's ``PXX_1YY`` videos, 60 for the original ``PXX_YY`` ones (the dataset's README and
    its annotation CSVs, whose start_frame / stop_frame follow the same rule)."""
    return 50 if _EPIC_100_NEW_VIDEO.match(video_id) else 60


def epic_frame_number(seconds: float, rate: float) -> int:
    """The published frame file shown at ``seconds``: ``frame_%010d.jpg`` numbered ``max(1, floor(t * F))``
    (frame 1 for 00:00:00.00; 1-based). The 1e-6 absorbs float error in ``seconds * rate``."""
    return max(1, int(math.floor(seconds * rate + 1e-6)))


@dataclass
class VideoInfo:
    fps: float
    num_frames: int
    width: int
    height: int


class VideoFrameReader:
    """Reads chosen frames of one video by seeking; use as a context manager.

    ``reseek_gap``: when the next wanted frame is at most this many frames ahead, keep decoding instead
    of seeking, because a seek restarts at a keyframe and may decode more than the gap.
    """

    def __init__(self, path: str, reseek_gap: int = 48):
        import av

        if not os.path.exists(path):
            raise InputError(f"video not found: {path}")
        try:
            self._container = av.open(path)
            self._stream = self._container.streams.video[0]
        except Exception as exc:  # PyAV raises many error types for broken files
            raise InputError(f"unreadable video {path}: {exc}") from exc
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise InputError(f"unreadable video {path}: no frame rate in the stream")
        self.path = path
        self.reseek_gap = reseek_gap
        self._fps = float(rate)
        self._time_base = stream.time_base
        self._start_pts = stream.start_time or 0
        num_frames = int(stream.frames or 0)
        if num_frames <= 0:
            duration = (float(stream.duration * stream.time_base) if stream.duration
                        else (self._container.duration or 0) / 1e6)
            num_frames = int(round(duration * self._fps))
        self.info = VideoInfo(self._fps, num_frames, stream.codec_context.width, stream.codec_context.height)
        self.decode_error = ""

    def time_to_index(self, seconds: float) -> int:
        return time_to_frame(seconds, self.info.fps)

    def index_to_time(self, index: int) -> float:
        return index / self.info.fps

    def __enter__(self) -> "VideoFrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _frame_index(self, frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        return int(round(float((pts - self._start_pts) * self._time_base) * self._fps))

    def _seek(self, index: int) -> None:
        # Half a frame early so that rounding never lands the seek point after the wanted frame.
        seconds = max(0.0, (index - 0.5) / self._fps)
        self._container.seek(self._start_pts + int(seconds / self._time_base), stream=self._stream,
                             backward=True, any_frame=False)

    def read(self, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """Frames (H, W, 3) uint8 RGB for the wanted indices; indices the video lacks are left out.

        A decode error mid-stream ends the read (the frames after it count as missing, and
        ``decode_error`` says why) instead of failing the whole video.
        """
        wanted = sorted(set(indices))
        out: dict[int, np.ndarray] = {}
        pos = 0
        while pos < len(wanted):
            self._seek(wanted[pos])
            reseek = False
            try:
                for frame in self._container.decode(self._stream):
                    index = self._frame_index(frame)
                    while pos < len(wanted) and wanted[pos] < index:
                        pos += 1  # the stream has no such frame: leave it out
                    if pos == len(wanted):
                        break
                    if index == wanted[pos]:
                        out[index] = frame.to_ndarray(format="rgb24")
                        pos += 1
                        if pos < len(wanted) and wanted[pos] - index > self.reseek_gap:
                            reseek = True
                            break
            except Exception as exc:  # PyAV raises several error types for corrupt packets
                self.decode_error = str(exc)
                break
            if not reseek:
                break  # all found, or the stream ended before the rest: they do not exist
        return out


def decode_sequential(path: str, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The baseline: decode every frame from the start up to the last wanted one (no seeking)."""
    import av

    wanted = set(indices)
    if not wanted:
        return {}
    last = max(wanted)
    out: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate)
        start = stream.start_time or 0
        for frame in container.decode(stream):
            index = int(round(float((frame.pts - start) * stream.time_base) * fps))
            if index in wanted:
                out[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
    return out


_FRAME_FILE = re.compile(r"^frame_(\d+)\.jpg$")


class FrameFolderReader:
    """EPIC-KITCHENS extracted frames: ``<dir>/frame_0000000001.jpg`` is 0-based frame 0 (files are 1-based)."""

    def __init__(self, folder: str, fps: float):
        if not os.path.isdir(folder):
            raise InputError(f"frame folder not found: {folder}")
        numbers = [int(m.group(1)) for m in map(_FRAME_FILE.match, os.listdir(folder)) if m]
        if not numbers:
            raise InputError(f"no frame_NNNNNNNNNN.jpg files in {folder}")
        self.folder = folder
        first = self._load(min(numbers) - 1)
        height, width = first.shape[:2] if first is not None else (0, 0)
        self.info = VideoInfo(float(fps), max(numbers), width, height)

    def time_to_index(self, seconds: float) -> int:
        """The 0-based index of the frame file the dataset's own rule names for ``seconds``."""
        return epic_frame_number(seconds, self.info.fps) - 1

    def index_to_time(self, index: int) -> float:
        return (index + 1) / self.info.fps

    def __enter__(self) -> "FrameFolderReader":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _load(self, index: int) -> np.ndarray | None:
        from PIL import Image

        path = os.path.join(self.folder, f"frame_{index + 1:010d}.jpg")
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError):
            return None  # missing or unreadable file: reported as a missing frame by the caller

    def read(self, indices: Iterable[int]) -> dict[int, np.ndarray]:
        out = {}
        for index in sorted(set(indices)):
            if 0 <= index < self.info.num_frames:
                frame = self._load(index)
                if frame is not None:
                    out[index] = frame
        return out


def find_frame_folder(frames_root: str, participant_id: str, video_id: str) -> str:
    """``rgb_frames/P01/P01_01`` as published, or ``rgb_frames/P01_01`` when the participant level is absent."""
    nested = os.path.join(frames_root, participant_id, video_id)
    return nested if os.path.isdir(nested) else os.path.join(frames_root, video_id)


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def index_videos(videos_root: str) -> dict[str, str]:
    """``{video_id: path}`` for every video file under ``videos_root``, whatever the nesting.

    Published layouts differ (Ego4D: flat ``<uid>.mp4``; EPIC: ``P01/videos/P01_01.MP4``), so the tree is
    walked once instead of guessing; the shallowest file wins when an id appears twice.
    """
    if not os.path.isdir(videos_root):
        raise InputError(f"videos directory not found: {videos_root}")
    found: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, files in os.walk(videos_root):
        dirnames.sort()
        depth = dirpath.count(os.sep)
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS and (stem not in found or depth < found[stem][0]):
                found[stem] = (depth, os.path.join(dirpath, name))
    return {stem: path for stem, (_, path) in found.items()}
