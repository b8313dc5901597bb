"""`egoframe recipe`: the shipped model's recipe as one resumable command (tiny settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from egoframe.errors import InputError
from egoframe.workflows.recipe import RecipeConfig, run_recipe

pytestmark = pytest.mark.timeout(900)


def test_recipe_makes_a_model_directory_and_a_rerun_redoes_nothing(tmp_path):
    config = RecipeConfig(out_dir=str(tmp_path / "r"), pairs=100, steps=3, batch_size=4, vllm_epochs=1,
                          vllm_pretrain_steps=3, vllm_reading=1.0, workers=1, unet_channels=(16, 32),
                          progress=False)
    summary = run_recipe(config, say=lambda *_: None)
    # stage 0 ran with the reading head and logged its accuracy
    stage0 = [json.loads(line) for line in open(tmp_path / "r" / "vllm" / "train_log.jsonl")][0]
    assert stage0["stage"] == "vision_pretrain" and stage0["reading_accuracy"] is not None
    model = tmp_path / "r" / "diffusion" / "model"
    assert summary["model"] == str(model) and (model / "model_index.json").is_file()
    assert (model / "vllm").is_dir() and (model / "sampling.json").is_file()
    train_config = json.load(open(model / "train_config.json"))
    assert train_config["optim"]["change_weight"] == 4.0 and train_config["optim"]["max_steps"] == 3
    assert train_config["model"]["tiny"]["unet_channels"] == [16, 32]
    # the exported sampling is the shipped model's
    shipped = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "egoframe", "assets",
                                          "default-model", "sampling.json")))
    assert json.load(open(model / "sampling.json")) == shipped
    assert set(summary["timings_s"]) == {"pairs", "enrich", "vllm", "embed", "diffusion"}
    from egoframe.data.records import load_records

    assert len(load_records(str(tmp_path / "r" / "pool"))) == 100
    stamp = os.path.getmtime(model / "model_index.json")
    # a rerun finds every stage finished: no stage is redone, so every recorded time stays as it was
    again = run_recipe(RecipeConfig(**{**config.__dict__, "timings": {}}), say=lambda *_: None)
    assert {k: v for k, v in again["timings_s"].items() if k not in ("pairs", "embed")} == \
        {k: v for k, v in summary["timings_s"].items() if k not in ("pairs", "embed")}
    assert os.path.getmtime(model / "model_index.json") == stamp


def test_recipe_bad_input_is_one_line(tmp_path):
    with pytest.raises(InputError, match="--pairs"):
        RecipeConfig(out_dir=str(tmp_path), pairs=5).validate()
    with pytest.raises(InputError, match="decay-start"):
        RecipeConfig(out_dir=str(tmp_path), steps=10, decay_start=10).validate()
    result = subprocess.run([sys.executable, "-m", "egoframe.cli.main", "recipe", "--out", str(tmp_path / "o"),
                             "--vae", str(tmp_path / "no-vae")], capture_output=True, text=True)
    assert result.returncode == 2 and "not a VAE directory" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_recipe_attention_levels_reach_the_unet(tmp_path):
    from egoframe.models.tiny import TinyConfig, tiny_components
    from egoframe.workflows.recipe import diffusion_config

    with pytest.raises(InputError, match="attention-levels"):
        RecipeConfig(out_dir=str(tmp_path), attention_levels=4).validate()
    config = RecipeConfig(out_dir=str(tmp_path), attention_levels=2).validate()
    train = diffusion_config(config, str(tmp_path), str(tmp_path / "cache"), str(tmp_path / "vae"),
                             str(tmp_path / "vllm"), str(tmp_path / "out"))
    assert train.model.tiny["attention_levels"] == 2
    unet = tiny_components(TinyConfig(resolution=64, **train.model.tiny), ablation="labels")["unet"]
    assert unet.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    # the default is the shipped layout (two levels since 2026-12-08); one level writes no key, as before
    shipped = diffusion_config(RecipeConfig(out_dir=str(tmp_path)), "d", "c", "v", "l", "o")
    assert shipped.model.tiny["attention_levels"] == 2 and shipped.optim.max_steps == 4900
    one = diffusion_config(RecipeConfig(out_dir=str(tmp_path), attention_levels=1).validate(), "d", "c", "v", "l", "o")
    assert "attention_levels" not in one.model.tiny
