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


def _to_pickle(folder, name):
    """Re-save folder's safetensors weights as the pickle file `name` (what older checkpoints ship)."""
    from safetensors.torch import load_file

    (weights,) = folder.glob("*.safetensors")
    torch.save(load_file(weights), folder / name)
    weights.unlink()
    return folder / name


def _pickle_sd_dir(tiny_sd_dir, tmp_path):
    bad = tmp_path / "sd-bin"
    shutil.copytree(tiny_sd_dir, bad)
    unet_bin = _to_pickle(bad / "unet", "diffusion_pytorch_model.bin")
    text_bin = _to_pickle(bad / "text_encoder", "pytorch_model.bin")
    return bad, unet_bin, text_bin


def test_pickle_only_weights_are_refused_by_default(tiny_sd_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("EGOFRAME_ALLOW_PICKLE", raising=False)
    bad, unet_bin, text_bin = _pickle_sd_dir(tiny_sd_dir, tmp_path)
    with pytest.raises(ModelLoadError) as err:
        load_pipeline(bad)
    message = str(err.value)
    assert "\n" not in message and str(unet_bin) in message
    assert "safetensors only" in message and "EGOFRAME_ALLOW_PICKLE=1" in message
    # the transformers layout (pytorch_model.bin) too, once the UNet is safetensors again
    shutil.rmtree(bad / "unet")
    shutil.copytree(tiny_sd_dir / "unet", bad / "unet")
    with pytest.raises(ModelLoadError) as err:
        load_pipeline(bad)
    assert str(err.value).startswith(f"{text_bin} is a pickle checkpoint")


def test_pickle_weights_load_with_the_opt_in(tiny_sd_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("EGOFRAME_ALLOW_PICKLE", raising=False)
    bad, _, _ = _pickle_sd_dir(tiny_sd_dir, tmp_path)
    reference = load_pipeline(tiny_sd_dir)
    for pipe in (load_pipeline(bad, allow_pickle=True), _with_env(monkeypatch, lambda: load_pipeline(bad))):
        assert torch.equal(pipe.unet.conv_in.weight, reference.unet.conv_in.weight)
        for ours, theirs in zip(pipe.text_encoder.parameters(), reference.text_encoder.parameters()):
            assert torch.equal(ours, theirs)
    # an explicit allow_pickle=False wins over the environment
    monkeypatch.setenv("EGOFRAME_ALLOW_PICKLE", "1")
    with pytest.raises(ModelLoadError, match="pickle checkpoint"):
        load_pipeline(bad, allow_pickle=False)


def _with_env(monkeypatch, load):
    monkeypatch.setenv("EGOFRAME_ALLOW_PICKLE", "1")
    try:
        return load()
    finally:
        monkeypatch.delenv("EGOFRAME_ALLOW_PICKLE")


def test_egoframe_model_with_pickle_unet(tiny_desc_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("EGOFRAME_ALLOW_PICKLE", raising=False)
    bad = tmp_path / "lego-bin"
    shutil.copytree(tiny_desc_dir, bad)
    unet_bin = _to_pickle(bad / "unet", "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle checkpoint") as err:
        load_pipeline(bad)
    assert str(unet_bin) in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("EGOFRAME_ALLOW_PICKLE", "1")
    pipe = load_pipeline(bad)
    assert torch.equal(pipe.unet.conv_in.weight, load_pipeline(tiny_desc_dir).unet.conv_in.weight)


def test_generate_cli_refuses_pickle_in_one_line(tiny_sd_dir, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from egoframe.cli.main import main

    monkeypatch.delenv("EGOFRAME_ALLOW_PICKLE", raising=False)
    bad, unet_bin, _ = _pickle_sd_dir(tiny_sd_dir, tmp_path)
    Image.new("RGB", (32, 32), (90, 120, 60)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--steps", "2", "--model", str(bad), "--image", str(tmp_path / "in.png"),
              "--action", "take cup", "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and not out.exists()
    assert err.strip().count("\n") == 0 and str(unet_bin) in err and "Traceback" not in err


def test_safe_loading_rules(tmp_path, monkeypatch):
    from egoframe.utils.safe_loading import pickle_allowed, pickle_only_file, weights_kwargs

    monkeypatch.delenv("EGOFRAME_ALLOW_PICKLE", raising=False)
    assert not pickle_allowed() and pickle_allowed(True) and weights_kwargs() == {"use_safetensors": True}
    for value, allowed in (("1", True), ("true", True), ("0", False), ("", False), ("no", False)):
        monkeypatch.setenv("EGOFRAME_ALLOW_PICKLE", value)
        assert pickle_allowed() is allowed
    assert weights_kwargs(allow_pickle=True) == {"use_safetensors": None}
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert pickle_only_file(tmp_path) == str(tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert pickle_only_file(tmp_path) is None  # safetensors beside it: that is what gets loaded
    assert pickle_only_file(tmp_path / "missing") is None
