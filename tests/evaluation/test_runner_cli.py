"""evaluate_folder over a generation set, its report files, and the `egoframe eval` CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation import pixel
from egoframe.evaluation.generation_set import read_generation_set
from egoframe.evaluation.runner import EvalConfig, MetricWeights, evaluate_folder

from .tiny_models import save_tiny_clip


@pytest.fixture
def generation_set(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "set"
    for sub in ("inputs", "targets", "good", "bad"):
        (root / sub).mkdir(parents=True)
    lines = ["sample_id,action,description,input,target,good,bad,seed"]  # "seed": not an image column
    for i in range(6):
        target = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        good = np.clip(target.astype(int) + rng.integers(-10, 11, size=target.shape), 0, 255).astype(np.uint8)
        bad = np.clip(target.astype(int) + rng.integers(-90, 91, size=target.shape), 0, 255).astype(np.uint8)
        Image.fromarray(target).save(root / "targets" / f"{i}.png")
        Image.fromarray(target).save(root / "inputs" / f"{i}.png")
        Image.fromarray(good).save(root / "good" / f"{i}.png")
        Image.fromarray(bad).save(root / "bad" / f"{i}.png")
        lines.append(f"s{i},cut tomato,the person cuts the tomato,inputs/{i}.png,targets/{i}.png,good/{i}.png,bad/{i}.png,{i}")
    (root / "samples.csv").write_text("\n".join(lines) + "\n")
    return root


def test_evaluate_folder_writes_scores_and_summary(generation_set, tmp_path):
    out = tmp_path / "out"
    config = EvalConfig(metrics=["psnr", "ssim", "l1", "l2"], resamples=500)
    report = evaluate_folder(generation_set, out_dir=out, config=config)
    assert report.methods == ["good", "bad"] and report.n == 6
    with (out / "scores.csv").open() as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 12 and set(scores[0]) == {"sample_id", "method", "psnr", "ssim", "l1", "l2"}
    row = next(r for r in scores if r["method"] == "good" and r["sample_id"] == "s2")
    expected = pixel.psnr(np.asarray(Image.open(generation_set / "good/2.png")),
                          np.asarray(Image.open(generation_set / "targets/2.png")))
    assert float(row["psnr"]) == pytest.approx(expected)
    parquet = pq.read_table(out / "scores.parquet")
    assert parquet.num_rows == 12 and parquet.column("psnr").to_pylist()[2] == pytest.approx(float(scores[2]["psnr"]))
    summary = json.loads((out / "summary.json").read_text())
    psnr_good = summary["per_method"]["good"]["psnr"]
    assert psnr_good["n"] == 6 and psnr_good["low"] <= psnr_good["value"] <= psnr_good["high"]
    paired = [c for c in summary["paired"] if c["metric"] == "psnr"][0]
    assert paired["a"] == "good" and paired["difference"]["value"] > 0 and paired["p_value"] < 0.05
    md = (out / "summary.md").read_text()
    assert "n = 6" in md and "| good |" in md and "p (two-sided)" in md
    assert json.loads((out / "config.json").read_text())["seed"] == 0


def test_model_metric_runs_through_the_runner(generation_set, tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip")
    config = EvalConfig(metrics=["clip-i", "clip-t"], methods=["good"], resamples=200,
                        weights=MetricWeights(clip=str(clip_dir)))
    report = evaluate_folder(generation_set, config=config)
    assert report.scores["good"]["clip-i"].shape == (6,)
    assert np.all(np.abs(report.scores["good"]["clip-t"]) <= 1)


def test_fid_through_the_runner(generation_set, fid_file):
    config = EvalConfig(metrics=["fid", "l1"], fid_resamples=5, fid_resolution=75, resamples=100,
                        weights=MetricWeights(inception=str(fid_file)))
    report = evaluate_folder(generation_set, config=config)
    fid = report.summary["per_method"]["good"]["fid"]
    assert fid["n"] == 6 and fid["resamples"] == 5 and fid["value"] > 0
    assert "fid" not in report.scores["good"]  # set-level: no per-sample column
    assert all(c["metric"] != "fid" for c in report.summary["paired"])


def test_runner_fails_fast_on_missing_weights_and_bad_sets(generation_set, tmp_path):
    with pytest.raises(MissingWeightsError, match="--lpips-weights"):
        evaluate_folder(generation_set, config=EvalConfig(metrics=["psnr", "lpips"]))
    with pytest.raises(MissingWeightsError, match="pt_inception"):
        evaluate_folder(generation_set, config=EvalConfig(metrics=["fid"]))
    with pytest.raises(InputError, match="unknown metric"):
        evaluate_folder(generation_set, config=EvalConfig(metrics=["psnr", "fidd"]))
    with pytest.raises(InputError, match="no method column"):
        read_generation_set(generation_set, methods=["lego"])
    with pytest.raises(InputError, match="no samples.csv"):
        read_generation_set(tmp_path)


def test_cli_eval(generation_set, tmp_path, capsys):
    from egoframe.cli.main import main

    out = tmp_path / "cli-out"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(generation_set), "--metrics", "psnr,l1", "--method", "good", "--resamples", "200",
              "--out", str(out)])
    assert exit_info.value.code == 0
    assert "| good |" in capsys.readouterr().out
    assert (out / "summary.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(generation_set), "--metrics", "egovlp", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: EgoVLP needs egovlp.safetensors") and "\n" not in err
