import json
import shutil

import pytest
import torch

from egoframe.errors import ModelLoadError
from egoframe.pipelines.lego import LegoPipeline
from egoframe.pipelines.loading import load_pipeline


def test_sd15_directory_loads_with_grown_unet(tiny_sd_dir):
    from diffusers import UNet2DConditionModel

    pipe = load_pipeline(tiny_sd_dir)
    assert isinstance(pipe, LegoPipeline)
    assert pipe.unet.config.in_channels == 8
    original = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    assert torch.equal(pipe.unet.conv_in.weight[:, :4], original.conv_in.weight)
    assert torch.count_nonzero(pipe.unet.conv_in.weight[:, 4:]) == 0
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert not pipe.conditioning.needs_vllm


def test_egoframe_directory_round_trips_config(tiny_lego_dir):
    pipe = load_pipeline(tiny_lego_dir)
    assert pipe.conditioning.config.use_image_tokens and pipe.conditioning.config.use_text_tokens
    assert pipe.conditioning.config.num_image_tokens == 4
    index = json.loads((tiny_lego_dir / "model_index.json").read_text())
    assert index["conditioning"] == ["egoframe.models.conditioning", "LegoConditioning"]


def test_missing_and_wrong_kind_directories(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_pipeline(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_pipeline(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="FluxPipeline"):
        load_pipeline(tmp_path)
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_pipeline(tmp_path)


def test_mismatched_shapes_are_refused(tiny_lego_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_lego_dir, bad)
    cfg = json.loads((bad / "conditioning" / "config.json").read_text())
    cfg["cross_attention_dim"] = 48  # no longer the UNet's width; weights no longer fit either
    (bad / "conditioning" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError) as err:
        load_pipeline(bad)
    assert "\n" not in str(err.value)


def test_incomplete_egoframe_directory(tiny_lego_dir, tmp_path):
    bad = tmp_path / "incomplete"
    shutil.copytree(tiny_lego_dir, bad)
    shutil.rmtree(bad / "conditioning")
    with pytest.raises(ModelLoadError, match="missing conditioning"):
        load_pipeline(bad)
