"""Unlimited world frames with their true states: fresh scenes simulated on the fly, never a stored video.

Every *episode* draws its own world (a new world seed, a random number of cups, bowls and tomatoes, camera
jitter, motion blur on or off), plans and plays one video of it with the same code that makes world videos
(:func:`~egoframe.world.simulate.plan_video`, :func:`~egoframe.world.simulate.play`), and yields some of its
frames: half of them at the frames curation takes (PRE-15 and PNR, each +-3, the aesthetic window), the rest
anywhere in the video (idle hands, reaches, mid-action poses, returns). So a reader trained on the stream
sees every state the world can reach, in every pose, and depends on no one world seed.

The stream is a pure function of its seed: the same seed gives the same frames in the same order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from egoframe.world.config import WorldConfig
from egoframe.world.render import render_state
from egoframe.world.simulate import plan_video, play
from egoframe.world.state import FrameState

_STREAM_TAG = 0x73747265616D  # "stream": keeps stream draws apart from world-making draws


@dataclass
class StreamFrame:
    """One frame of the stream: the uint8 image, the true state it shows, and where it came from."""

    image: np.ndarray  # (R, R, 3) uint8, motion blur applied when the episode's world has it
    state: FrameState
    episode: int
    world_seed: int
    frame: int
    key: bool  # a frame curation could take (PRE-15 +-3 or PNR +-3 of an action)


def episode_config(rng: np.random.Generator, resolution: int) -> WorldConfig:
    """A random world for one episode: every scene size and camera setting the world's config allows."""
    blur = bool(rng.random() < 0.3)
    return WorldConfig(
        n_videos=1, seed=int(rng.integers(0, 2**31 - 1)), resolution=resolution,
        n_cups=int(rng.integers(2, 5)), n_bowls=int(rng.integers(1, 4)), max_tomatoes=int(rng.integers(1, 4)),
        camera_jitter=float(rng.uniform(0.0, 0.012)), motion_blur=blur,
        blur_shutter=float(rng.uniform(0.2, 0.6)) if blur else 0.5,
    ).validate()


def stream_frames(seed: int, resolution: int = 128, frames_per_episode: int = 24,
                  key_share: float = 0.5) -> Iterator[StreamFrame]:
    """An endless, seeded stream of rendered world frames with their true states (see the module docstring)."""
    if frames_per_episode < 1 or not 0.0 <= key_share <= 1.0:
        raise ValueError("frames_per_episode must be >= 1 and key_share in [0, 1]")
    for episode in itertools.count():
        rng = np.random.default_rng(np.random.SeedSequence([seed, episode, _STREAM_TAG]))
        config = episode_config(rng, resolution)
        plan = plan_video(config, int(rng.integers(0, 10_000)))
        states = play(config, plan)
        n = len(states)
        key_frames = sorted({f for a in plan.actions for centre in (a.pnr - config.pre_frames, a.pnr)
                             for f in range(centre - 3, centre + 4) if 0 <= f < n})
        n_key = int(round(frames_per_episode * key_share))
        picks = [(int(f), True) for f in rng.choice(key_frames, size=min(n_key, len(key_frames)), replace=False)]
        picks += [(int(f), False) for f in rng.integers(0, n, size=frames_per_episode - len(picks))]
        for frame, key in picks:
            image = render_state(states[frame], resolution)
            if config.motion_blur and frame > 0:
                # the same blend make_video applies: the previous frame shows through the shutter
                prev = render_state(states[frame - 1], resolution).astype(np.float32)
                image = np.clip((1 - config.blur_shutter) * image + config.blur_shutter * prev + 0.5, 0, 255
                                ).astype(np.uint8)
            yield StreamFrame(image=image, state=states[frame], episode=episode, world_seed=config.seed,
                              frame=frame, key=key)


__all__ = ["StreamFrame", "episode_config", "stream_frames"]
