"""A tiny embedded world (4 videos, 64 px) shared by the oracle and reproduce tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from egoframe.world import make_world

    root = str(tmp_path_factory.mktemp("world"))
    make_world(root, n_videos=4, resolution=64, progress=False, workers=1, min_actions=3, max_actions=4)
    return root
