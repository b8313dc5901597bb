"""`egoframe eval-world`: the protocol end to end on a tiny world, its summary layout, resume and bad input."""

from __future__ import annotations

import json
import os

import pytest

from egoframe.errors import InputError
from egoframe.workflows.eval_world import EvalWorldConfig, run_eval_world
from tests.evaluation.world_fixtures import tiny_oracle, tiny_world  # noqa: F401  (fixtures)

MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "src", "egoframe", "assets", "default-model")
pytestmark = pytest.mark.timeout(600)


def test_eval_world_writes_the_protocol_summary_and_resumes(tiny_oracle, tmp_path):  # noqa: F811
    out = tmp_path / "ew"
    config = EvalWorldConfig(model=MODEL, out=str(out), world_seed=11, videos=3, n=3, methods=("label", "copy"),
                             steps=1, split="all", oracle=tiny_oracle, progress=False)
    summary = run_eval_world(config, say=lambda *_: None)
    on_disk = json.load(open(out / "summary.json"))
    assert on_disk["n"] == summary["n"] == 3 and on_disk["world_seed"] == 11
    assert set(on_disk["methods"]) == {"label", "copy", "target"}
    for entry in on_disk["methods"].values():
        for key in ("action_success", "state_accuracy", "psnr", "ssim"):
            lo, hi = entry[f"{key}_ci"]
            assert lo <= entry[key] <= hi
    assert [c["a"] + "-" + c["b"] for c in on_disk["comparisons"]] == ["label-copy"]
    passes = on_disk["methods"]["copy"]["passes"]
    assert passes["pairs_with_unchanged_true_states"] == 0  # curation's truth filter dropped any such pair
    assert passes["total"] == passes["reader_errors"] + passes["true_states_unchanged"]
    assert (out / "report.md").is_file() and (out / "grid.png").is_file()
    # the premise's breakdown: every pair is on one side of each ambiguity, and the sides' means add up
    for entry in on_disk["methods"].values():
        for kind, sides in entry["action_success_by_ambiguity"].items():
            assert sides["ambiguous"]["n"] + sides["unambiguous"]["n"] == 3
            total = sum((side["value"] or 0) * side["n"] for side in sides.values())
            assert total == pytest.approx(3 * entry["action_success"])
    assert "| which object |" in (out / "report.md").read_text()
    # generated frames are at the input's size (128 px), whatever size the model works at
    from PIL import Image

    sample = on_disk["sample_ids"][0]
    assert Image.open(out / "label" / f"{sample}.png").size == Image.open(out / "inputs" / f"{sample}.png").size
    # a rerun redoes nothing: the generated frames keep their bytes and times
    stamp = os.path.getmtime(out / "label" / f"{sample}.png")
    assert run_eval_world(config, say=lambda *_: None)["per_sample"] == summary["per_sample"]
    assert os.path.getmtime(out / "label" / f"{sample}.png") == stamp
    with pytest.raises(InputError, match="seed 11"):
        run_eval_world(EvalWorldConfig(**{**config.__dict__, "world_seed": 12}), say=lambda *_: None)
    # the sampling used is recorded, and a rerun with other sampling refuses to mix its frames with these
    report = (out / "report.md").read_text()
    assert on_disk["sampling"]["num_inference_steps"] == 1 and "Sampling: 1 steps" in report
    assert f"--split all --methods label,copy --steps 1 --out {out}`" in report  # the command that reproduces it
    with pytest.raises(InputError, match="use another --out"):
        run_eval_world(EvalWorldConfig(**{**config.__dict__, "guidance_scale": 4.0}), say=lambda *_: None)
    # the decoder's ceiling: true targets through the model's autoencoder, far closer to them than a copy
    rt = run_eval_world(EvalWorldConfig(**{**config.__dict__, "methods": ("copy", "roundtrip")}), say=lambda *_: None)
    assert (out / "roundtrip" / f"{sample}.png").is_file()
    assert rt["methods"]["roundtrip"]["psnr"] > rt["methods"]["copy"]["psnr"] + 3


def test_eval_world_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "egoframe.cli.main", "eval-world", "--model", str(tmp_path / "nope"),
                             "--world-seed", "1", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "not a directory" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(InputError, match="unknown method"):
        EvalWorldConfig(model=MODEL, out=str(tmp_path), world_seed=1, methods=("magic",)).validate()
    with pytest.raises(InputError, match="guidance-interval"):
        EvalWorldConfig(model=MODEL, out=str(tmp_path), world_seed=1, guidance_interval=(0.8, 0.2)).validate()
    result = subprocess.run([sys.executable, "-m", "egoframe.cli.main", "eval-world", "--model", MODEL, "--world-seed",
                             "1", "--out", str(tmp_path / "o"), "--guidance-interval", "half"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "two fractions" in result.stderr and "Traceback" not in result.stderr
