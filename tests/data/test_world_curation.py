"""The curation pipeline on the embedded world: the frames it picks are the world's own ground truth."""

import subprocess
import sys

import pytest

from egoframe.data.records import load_records

pytestmark = pytest.mark.timeout(180)


def _cli(*args):
    result = subprocess.run([sys.executable, "-m", "egoframe.cli.main", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    pytest.importorskip("egoframe.world.make", reason="the world generator (egoframe.world) is not in this checkout")
    root = tmp_path_factory.mktemp("world") / "w"
    _cli("world", "make", "--out", root, "--videos", 3, "--resolution", 64, "--quiet", "--workers", 1)
    return root


@pytest.mark.parametrize("fmt,annotation", [("epic100", "annotations/EPIC_100_train.csv"),
                                            ("ego4d", "annotations/fho_main.json")])
def test_curated_pairs_are_the_world_ground_truth(world, fmt, annotation, tmp_path):
    truth = {r.id: r for r in load_records(str(world / "ground_truth.parquet"))}
    exact, chosen = tmp_path / "exact", tmp_path / "chosen"
    common = ["data", "curate", "--format", fmt, "--annotations", world / annotation, "--videos", world,
              "--no-progress", "--no-filter"]
    _cli(*common, "--out", exact, "--neighbours", 0)
    _cli(*common, "--out", chosen)
    pairs = load_records(str(exact))
    expected_ids = {r.id for r in truth.values() if fmt == "ego4d" or r.split == "train"}  # the CSV is train only
    assert {r.id for r in pairs} == expected_ids and pairs
    for rec in pairs:
        gt = truth[rec.id]
        assert (rec.input_frame, rec.target_frame) == (gt.input_frame, gt.target_frame), rec.id
        assert rec.video_id == gt.video_id and rec.fps == gt.fps
    for rec in load_records(str(chosen)):
        gt = truth[rec.id]
        assert (rec.extra["input_frame_nominal"], rec.extra["target_frame_nominal"]) == (gt.input_frame, gt.target_frame)
        assert abs(rec.input_frame - gt.input_frame) <= 3 and abs(rec.target_frame - gt.target_frame) <= 3
    if fmt == "ego4d":
        rec = pairs[0]
        assert [(b.role, b.frame) for b in rec.boxes] == [(b.role, b.frame) for b in truth[rec.id].boxes]
