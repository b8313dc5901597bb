"""Typed configuration of the embedded world, saved as ``world_config.json`` next to what it made."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from egoframe.errors import ConfigError

CONFIG_FILE = "world_config.json"


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides the world's content. Same config -> byte-identical annotations and states.

    Timing fields are seconds; they are turned into frames with ``round(seconds * fps)``.
    """

    n_videos: int = 50
    seed: int = 0
    resolution: int = 128  # square frames, pixels
    fps: int = 30
    min_actions: int = 5  # per video
    max_actions: int = 8
    n_cups: int = 3
    n_bowls: int = 2
    max_tomatoes: int = 2
    test_fraction: float = 0.2  # share of videos in the test split (split is by video)
    videos_per_participant: int = 10  # video i belongs to participant P{i // this + 1:02d}
    # Cues at the input (PRE-15) frame: strong by default; weak = the acting hand has hardly moved and the
    # camera does not turn; misleading = the other hand and the gaze go to a distractor object first.
    cue_weak_prob: float = 0.2
    cue_misleading_prob: float = 0.1
    camera_jitter: float = 0.006  # amplitude of head jitter, scene units (0.006 * 128 px ~ 0.8 px)
    motion_blur: bool = False  # blend each frame with the previous one (then render_state != video frame)
    blur_shutter: float = 0.5  # weight of the previous frame when motion_blur is on
    crf: int = 12  # x264 constant rate factor: low = near-lossless, so decoded frames match render_state
    # yuv420p: what real egocentric videos use and every player opens (~31.5 dB vs render_state, the loss is
    # halved chroma at colour edges); yuv444p: ~40 dB, H.264 High 4:4:4, fine for PyAV/ffmpeg readers
    pix_fmt: str = "yuv420p"
    codec: str = "auto"  # "auto" (libx264, else h264, else mpeg4) or a PyAV encoder name
    # The visible state change is complete this long before the annotated PNR frame (0.1 s = 3 frames at 30 fps),
    # so that curation's +-3-frame aesthetic choice around the PNR never picks a target from before the change.
    change_lead_s: float = 0.1
    pre_offset_s: float = 0.5  # PRE-15: the input frame is 15 frames (0.5 s at 30 fps) before the PNR
    epic_input_offset_s: float = 0.25  # LEGO's EPIC rule: input at start - 0.25 s ...
    epic_target_lambda: float = 0.6  # ... target at start + 0.6 * (stop - start)

    def validate(self) -> "WorldConfig":
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"world config: {name}={getattr(self, name)!r} {why}")

        if self.n_videos < 1:
            raise bad("n_videos", "must be >= 1")
        if not 16 <= self.resolution <= 1024:
            raise bad("resolution", "must be between 16 and 1024 pixels")
        if self.resolution % 2:
            raise bad("resolution", "must be even (H.264 yuv420p needs even frame sizes)")
        # EPIC timestamps have 1/100 s resolution; above ~36 fps a hundredth is more than a third of a frame
        # and the start/stop times can no longer be placed so that both floor and round hit the true frames.
        if not 10 <= self.fps <= 36:
            raise bad("fps", "must be between 10 and 36 (EPIC timestamps have 1/100 s resolution)")
        if not 1 <= self.min_actions <= self.max_actions <= 40:
            raise bad("min_actions", f"and max_actions={self.max_actions} must satisfy 1 <= min <= max <= 40")
        if not 2 <= self.n_cups <= 4:
            raise bad("n_cups", "must be 2..4 (one colour each)")
        if not 1 <= self.n_bowls <= 3:
            raise bad("n_bowls", "must be 1..3")
        if not 1 <= self.max_tomatoes <= 3:
            raise bad("max_tomatoes", "must be 1..3")
        if not 0.0 <= self.test_fraction < 1.0:
            raise bad("test_fraction", "must be in [0, 1)")
        if self.videos_per_participant < 1:
            raise bad("videos_per_participant", "must be >= 1")
        for name in ("cue_weak_prob", "cue_misleading_prob", "blur_shutter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if self.cue_weak_prob + self.cue_misleading_prob > 1.0:
            raise bad("cue_weak_prob", "plus cue_misleading_prob must be <= 1")
        if not 0.0 <= self.camera_jitter <= 0.05:
            raise bad("camera_jitter", "must be in [0, 0.05]")
        if self.pix_fmt not in ("yuv420p", "yuv444p"):
            raise bad("pix_fmt", "must be 'yuv420p' or 'yuv444p'")
        if not 0 <= self.crf <= 51:
            raise bad("crf", "must be 0..51")
        if not 0.0 <= self.change_lead_s <= 0.2:
            raise bad("change_lead_s", "must be in [0, 0.2] seconds")
        if self.epic_input_offset_s >= self.pre_offset_s:
            raise bad("epic_input_offset_s", f"must be smaller than pre_offset_s={self.pre_offset_s}")
        if not 0.0 < self.epic_target_lambda < 1.0:
            raise bad("epic_target_lambda", "must be in (0, 1)")
        return self

    @property
    def change_lead_frames(self) -> int:
        """Frames between the completed state change and the annotated PNR frame."""
        return round(self.change_lead_s * self.fps)

    @property
    def pre_frames(self) -> int:
        """Frames between the input (PRE-15) frame and the PNR frame."""
        return round(self.pre_offset_s * self.fps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise ConfigError(f"world config: unknown keys {unknown}")
        return cls(**row).validate()

    def save(self, out_dir: str) -> str:
        path = os.path.join(out_dir, CONFIG_FILE)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, out_dir: str) -> "WorldConfig":
        path = os.path.join(out_dir, CONFIG_FILE) if os.path.isdir(out_dir) else out_dir
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read world config {path}: {exc}") from None
