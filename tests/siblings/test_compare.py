"""`egoframe sibling compare` end to end on a tiny world: report rows with n and intervals, reuse of finished
runs and images on a rerun, resume of an interrupted run, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import re
from dataclasses import replace
from pathlib import Path

import pytest

import egoframe.siblings.train as sibling_train
from egoframe.errors import ConfigError, InputError, MissingWeightsError
from egoframe.workflows.siblings_compare import CompareConfig, compare, run_configs, train_run
from tests.evaluation.world_fixtures import tiny_world  # noqa: F401  (fixture)

LEGO = os.path.join(os.path.dirname(__file__), "..", "..", "src", "egoframe", "assets", "default-model")


@pytest.fixture(scope="module")
def world_inputs(tiny_world, tmp_path_factory):  # noqa: F811
    """Curated + rule-enriched pairs of the tiny world and a tiny oracle trained a few steps."""
    from egoframe.evaluation.oracle import OracleConfig, train_oracle
    from egoframe.workflows.reproduce import ReproduceConfig, prepare_data

    work = str(tmp_path_factory.mktemp("compare-inputs"))
    data = prepare_data(ReproduceConfig(world=tiny_world, out_dir=work))
    oracle = os.path.join(work, "oracle")
    train_oracle(OracleConfig(source="world", world=tiny_world, out_dir=oracle, steps=10, resolution=32,
                              frame_stride=10, threads=1))
    return data, oracle


def _config(tiny_world, world_inputs, out, **kw):  # noqa: F811
    data, oracle = world_inputs
    settings = {"data": data, "world": tiny_world, "oracle": oracle, "small": True, "steps": 2, "batch_size": 4,
                "n_test": 3, "sample_steps": 2, "resamples": 200, "threads": 1}
    return CompareConfig(out_dir=str(out), **{**settings, **kw})


def test_compare_writes_the_report_and_reuses_finished_work(tiny_world, world_inputs, tmp_path, monkeypatch):  # noqa: F811
    config = _config(tiny_world, world_inputs, tmp_path / "out", lego=LEGO)
    report = compare(config, command="egoframe sibling compare --small")
    text = Path(report).read_text()
    assert "`egoframe sibling compare --small` (seed 0)" in text
    cell = r"-?[\d.]+ \[-?[\d.]+, -?[\d.]+\]"
    n = json.loads((Path(report).parent / "summary.json").read_text())["summary"]["n"]
    assert 2 <= n <= 3
    for system in ("SmartEdit", "MGIE", "ReasonPix2Pix", "LEGO"):
        for kind in ("action label", "reasoning instruction" if system != "LEGO" else "LEGO takes no reasoning"):
            row = next(line for line in text.splitlines() if line.startswith(f"| {system}, ") and kind in line)
            assert re.search(rf"\| {n} \|( {cell} \|){{4}}$", row), row
    assert "| copy input (reference) |" in text and "| target through the sibling VAE (ceiling) |" in text
    for pair in ("| smartedit-reasoning | smartedit-direct |", "| rp2p-direct | copy |", "| lego-direct | copy |"):
        assert pair in text
    assert "| training smartedit-stage1 |" in text and "| generation |" in text
    report_dir = os.path.dirname(report)
    assert os.path.getsize(os.path.join(report_dir, "metrics.png")) > 1000
    assert os.path.getsize(os.path.join(report_dir, "grid.png")) > 1000
    set_dir = tmp_path / "out" / "generation_set"
    images = sorted(str(p) for p in set_dir.glob("*-*/*.png"))
    assert len(images) == 9 * n  # 3 systems x 2 instructions, LEGO x 2, the VAE ceiling
    stamps = {p: os.path.getmtime(p) for p in images}
    header = (set_dir / "samples.csv").read_text().splitlines()[0]
    assert all(c in header for c in ("video_id", "input_frame", "target_frame", "verb", "reasoning_instruction"))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sibling_train, "train_sibling", no_training)
    again = Path(compare(config)).read_text()
    assert "smartedit-stage1: reused" in again and "rp2p: reused" in again and "mgie: reused" in again
    assert {p: os.path.getmtime(p) for p in images} == stamps  # no image was made again
    trained = re.search(r"\| training mgie \| 0.0 \| ([\d.]+) \|", again)  # the first run's cost is kept
    assert trained and float(trained.group(1)) > 0

    with pytest.raises(ConfigError, match="other settings"):
        compare(replace(config, sample_steps=3))


def test_direct_mode_trains_on_labels_and_evaluates_them_only(tiny_world, world_inputs, tmp_path):  # noqa: F811
    text = Path(compare(_config(tiny_world, world_inputs, tmp_path, systems=["rp2p"], reasoning=False))).read_text()
    assert "| ReasonPix2Pix, action label |" in text and "reasoning instruction |" not in text
    saved = json.loads((tmp_path / "runs" / "rp2p" / sibling_train.CONFIG_FILE).read_text())
    assert saved["root"] == world_inputs[0] and not (tmp_path / "data-reasoning").exists()


def test_interrupted_run_resumes_and_a_run_without_checkpoint_restarts(tiny_world, world_inputs, tmp_path,  # noqa: F811
                                                                      monkeypatch):
    cfg = _config(tiny_world, world_inputs, tmp_path).resolved()
    (config,) = run_configs(cfg, "rp2p", cfg.data)
    calls = []

    class Result:
        final_loss = 0.0

    def fake_train(c, progress=False, resume=False):
        calls.append((resume, os.path.exists(os.path.join(c.out_dir, sibling_train.LOSSES))))
        return Result()

    monkeypatch.setattr(sibling_train, "train_sibling", fake_train)
    os.makedirs(os.path.join(config.out_dir, "checkpoints", "step-00000001"))
    open(os.path.join(config.out_dir, "checkpoints", "step-00000001", "state.json"), "w").close()  # complete
    open(os.path.join(config.out_dir, sibling_train.LOSSES), "w").close()
    assert train_run(config)["resumed"] is True
    shutil.rmtree(os.path.join(config.out_dir, "checkpoints", "step-00000001"))  # killed before any checkpoint
    assert train_run(config)["resumed"] is False
    assert calls == [(True, True), (False, False)]  # the checkpoint-less run starts from an empty directory


def test_bad_inputs_fail_before_training(tiny_world, world_inputs, tmp_path, monkeypatch):  # noqa: F811
    from egoframe.data.records import load_records, save_records

    def no_training(*args, **kwargs):
        raise AssertionError("trained despite bad input")

    monkeypatch.setattr(sibling_train, "train_sibling", no_training)
    with pytest.raises(MissingWeightsError, match="not an oracle directory"):
        compare(_config(tiny_world, world_inputs, tmp_path / "a", oracle=str(tmp_path / "no-oracle")))
    with pytest.raises(InputError, match="not a curated data set"):
        compare(_config(tiny_world, world_inputs, tmp_path / "b", data=str(tmp_path)))
    data, _ = world_inputs
    no_test = tmp_path / "no-test"
    records = [replace(r, split="train", input_path=os.path.join(data, r.input_path),
                       target_path=os.path.join(data, r.target_path)) for r in load_records(data)]
    os.makedirs(no_test)
    save_records(records, str(no_test / "pairs.parquet"))
    with pytest.raises(InputError, match="test-split pairs"):
        compare(_config(tiny_world, world_inputs, tmp_path / "c", data=str(no_test)))
    with pytest.raises(ConfigError, match="systems"):
        compare(_config(tiny_world, world_inputs, tmp_path / "d", systems=["smartedit", "dalle"]))
    with pytest.raises(ConfigError, match="may not set out_dir"):
        compare(_config(tiny_world, world_inputs, tmp_path / "e", train_overrides={"out_dir": "x"}))


def test_cli_errors_are_one_line(tmp_path, capsys):
    from egoframe.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["sibling", "compare", "--data", str(tmp_path), "--world", str(tmp_path), "--oracle", str(tmp_path),
              "--out", str(tmp_path / "out"), "--systems", "dalle"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "dalle" in err and "\n" not in err
