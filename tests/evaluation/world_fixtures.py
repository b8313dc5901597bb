"""A tiny embedded world (4 videos, 64 px) shared by the oracle and reproduce tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from egoframe.world import make_world

    root = str(tmp_path_factory.mktemp("world"))
    make_world(root, n_videos=4, resolution=64, progress=False, workers=1, min_actions=3, max_actions=4)
    return root


@pytest.fixture(scope="module")
def tiny_oracle(tiny_world, tmp_path_factory):
    """An oracle trained a few steps on the tiny world's videos (the "world" source: seconds, not minutes)."""
    from egoframe.evaluation.oracle import OracleConfig, train_oracle

    out = str(tmp_path_factory.mktemp("oracle"))
    train_oracle(OracleConfig(source="world", world=tiny_world, out_dir=out, steps=25, resolution=32,
                              channels=(8, 16), hidden=32, frame_stride=15, batch_size=16))
    return out
