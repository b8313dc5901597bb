"""The on-the-fly pair source: deterministic per seed, curation's frame rule, every pair shows its action,
and a written data set that the rest of egoframe reads unchanged (and that resumes)."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest

from egoframe.errors import InputError
from egoframe.world.facts import action_facts, state_facts
from egoframe.world.pairs import WINDOW, episode_pairs, stream_pairs, write_pairs


def _take(seed, n=20):
    return list(itertools.islice(stream_pairs(seed, resolution=64), n))


def test_pairs_are_deterministic_per_seed_and_vary_across_seeds():
    a, b, c = _take(3), _take(3), _take(4)
    assert all(np.array_equal(x.input_image, y.input_image) and np.array_equal(x.target_image, y.target_image)
               and x.input_frame == y.input_frame and x.target_frame == y.target_frame for x, y in zip(a, b))
    assert not all(np.array_equal(x.input_image, y.input_image) for x, y in zip(a, c))


def test_pairs_follow_curations_frame_rule_and_show_the_change():
    from egoframe.world.config import WorldConfig

    pre_frames = WorldConfig().pre_frames
    pairs = [p for e in range(6) for p in episode_pairs(7, e, resolution=64)]
    assert len(pairs) >= 20
    for p in pairs:
        # one frame of each +-3 aesthetic window: near PRE-15 and near the PNR
        assert abs(p.input_frame - (p.action.pnr - pre_frames)) <= WINDOW
        assert abs(p.target_frame - p.action.pnr) <= WINDOW
        fin, ftg = state_facts(p.input_state), state_facts(p.target_state)
        changed = [k for k in action_facts(p.action.verb, fin, ftg) if fin[k] != ftg[k]]
        assert changed, f"{p.action.label}: input and target agree on every fact of the action"
        assert p.input_image.shape == (64, 64, 3) and p.input_image.dtype == np.uint8


def test_written_pairs_are_a_data_set_that_training_reads_and_resume(tmp_path):
    from egoframe.data.dataset import FramePairDataset
    from egoframe.enrichment.rules import describe

    out = str(tmp_path / "pool")
    report = write_pairs(out, 40, seed=5, resolution=64, test_every=3)
    assert report["counts"]["pairs_kept"] == 40 and report["counts"]["pairs_kept_test"] > 0
    ds = FramePairDataset(out, resolution=32, split="all")
    assert len(ds) == 40
    item = ds[0]
    assert item["input"].shape == (3, 32, 32) and float(item["input"].min()) >= -1.0
    # the rules enricher finds the hand and object boxes, as on curated world data
    rec = ds.records[0]
    assert rec.extra["object_name"] in describe(rec)
    # resuming: the same records, nothing re-rendered; more pairs extend the same ones
    before = sorted(os.listdir(os.path.join(out, "work")))
    stamp = os.stat(os.path.join(out, "pairs.parquet")).st_mtime_ns
    again = write_pairs(out, 40, seed=5, resolution=64, test_every=3)
    assert again == report and sorted(os.listdir(os.path.join(out, "work"))) == before
    # the pairs file is not rewritten (its size and mtime key a training run's latent cache)
    assert os.stat(os.path.join(out, "pairs.parquet")).st_mtime_ns == stamp
    longer = write_pairs(out, 300, seed=5, resolution=64, test_every=3)
    assert longer["counts"]["pairs_kept"] == 300
    assert [r.id for r in FramePairDataset(out, resolution=32, split="all").records[:40]] == [r.id for r in ds.records]
    with open(os.path.join(out, "pairs_config.json")) as fh:
        assert json.load(fh)["seed"] == 5
    with pytest.raises(InputError, match="other settings"):
        write_pairs(out, 40, seed=6, resolution=64, test_every=3)


def test_cli_pairs_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "egoframe.cli.main", "world", "pairs", "--out", str(tmp_path / "p"),
                             "--pairs", "10", "--resolution", "15", "--quiet"], capture_output=True, text=True)
    assert result.returncode != 0 and "resolution" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
