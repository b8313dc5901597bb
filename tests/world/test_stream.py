"""The on-the-fly frame stream: a pure function of its seed, frames equal to their states, key frames present."""

from __future__ import annotations

import itertools

import numpy as np

from egoframe.world.render import render_state
from egoframe.world.stream import stream_frames


def _take(seed, n=40, **kw):
    return list(itertools.islice(stream_frames(seed, resolution=64, frames_per_episode=10, **kw), n))


def test_stream_is_deterministic_per_seed_and_varies_across_seeds():
    a, b, c = _take(5), _take(5), _take(6)
    assert all(np.array_equal(x.image, y.image) and x.state == y.state for x, y in zip(a, b))
    assert not all(np.array_equal(x.image, y.image) for x, y in zip(a, c))
    assert len({f.world_seed for f in a}) == 4  # 40 frames, 10 per episode: four fresh worlds


def test_stream_frames_show_their_states():
    for f in _take(1, n=30):
        drawn = render_state(f.state, 64)
        if f.state.blur == 0.0:
            assert np.array_equal(drawn, f.image)
        else:  # motion blur: the previous frame shows through, the frame stays close to its own state
            assert np.abs(drawn.astype(int) - f.image.astype(int)).mean() < 12
    frames = _take(2, n=100, key_share=0.5)
    assert 0.4 <= np.mean([f.key for f in frames]) <= 0.6
