"""Each system trains a few steps on tiny pairs: the right parts change, the losses are the papers', the
exported model loads and generates; SmartEdit's stage 1 output initialises stage 2."""

from __future__ import annotations

import pytest
import torch

from egoframe.errors import ConfigError
from egoframe.siblings.pipeline import load_sibling_pipeline
from egoframe.siblings.train import SiblingTrainConfig, read_losses, train_sibling


def _config(pairs, out, system, **kw):
    settings = dict(resolution=32, batch_size=2, max_steps=2, lr=1e-3, drop_text=0.3, drop_image=0.1, drop_both=0.1)
    return SiblingTrainConfig(system=system, root=pairs, out_dir=str(out), **{**settings, **kw})


@pytest.mark.parametrize("system,terms", [("mgie", {"ce", "mse", "diffusion"}), ("rp2p", {"diffusion"})])
def test_train_exports_a_working_model(system, terms, sibling_pairs, tmp_path):
    result = train_sibling(_config(sibling_pairs, tmp_path, system), progress=False)
    rows = read_losses(str(tmp_path))
    assert len(rows) == 2 and set(rows[0]) - {"step", "loss"} == terms
    pipe = load_sibling_pipeline(result.out_dir)
    assert pipe.system == system
    out = pipe(torch.zeros(1, 3, 32, 32), "take cup", num_inference_steps=1, output_type="pt", progress=False)
    assert torch.isfinite(out.images).all()
    with pytest.raises(ConfigError, match="already holds a run"):
        train_sibling(_config(sibling_pairs, tmp_path, system), progress=False)


def test_smartedit_stage1_then_stage2(sibling_pairs, tmp_path):
    stage1 = train_sibling(_config(sibling_pairs, tmp_path / "s1", "smartedit", stage=1), progress=False)
    assert set(read_losses(str(tmp_path / "s1"))[0]) == {"step", "loss", "ce", "mse"}
    from egoframe.siblings.connectors import SmartEditConnector

    before = SmartEditConnector.from_pretrained(f"{stage1.out_dir}/connector", use_safetensors=True)
    cfg = _config(sibling_pairs, tmp_path / "s2", "smartedit", init_from=stage1.out_dir, ema_decay=0.0)
    result = train_sibling(cfg, progress=False)
    assert set(read_losses(str(tmp_path / "s2"))[0]) == {"step", "loss", "ce", "diffusion"}
    after = load_sibling_pipeline(result.out_dir)
    # stage 2 trains the connector, including the zero-init output layers, starting from stage 1's weights
    assert not torch.equal(before.qformer_out.weight, after.connector.qformer_out.weight)
    assert torch.count_nonzero(after.connector.image_out.weight) > 0
    assert len(after.edit_token_ids) == 4


def test_config_errors():
    with pytest.raises(ValueError, match="stage 1"):
        SiblingTrainConfig(system="mgie", stage=1, root="x", out_dir="y")
    assert SiblingTrainConfig(system="mgie", root="x", out_dir="y").weights() == (1.0, 0.5, 1.0)
    assert SiblingTrainConfig(system="smartedit", root="x", out_dir="y").weights() == (1.0, 0.0, 1.0)


def test_killed_run_resumes_with_the_same_losses(sibling_pairs, tmp_path, monkeypatch):
    import egoframe.siblings.train as train_module

    whole = train_sibling(_config(sibling_pairs, tmp_path / "whole", "mgie", max_steps=4, checkpoint_every=2),
                          progress=False)
    expected = read_losses(str(tmp_path / "whole"))

    real, calls = train_module._diffusion_loss, []

    def dies_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the step-2 checkpoint, mid step 3
        return real(*args, **kwargs)

    cfg = _config(sibling_pairs, tmp_path / "cut", "mgie", max_steps=4, checkpoint_every=2)
    monkeypatch.setattr(train_module, "_diffusion_loss", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_sibling(cfg, progress=False)
    monkeypatch.setattr(train_module, "_diffusion_loss", real)
    with pytest.raises(ConfigError, match="--resume"):
        train_sibling(cfg, progress=False)  # a second plain start must not overwrite the run
    with pytest.raises(ConfigError, match="lr changed"):
        train_sibling(cfg.model_copy(update={"lr": 5e-4}), progress=False, resume=True)
    resumed = train_sibling(cfg, progress=False, resume=True)
    assert read_losses(str(tmp_path / "cut")) == expected  # steps 1-2 kept, 3-4 recomputed identically
    a, b = load_sibling_pipeline(whole.out_dir), load_sibling_pipeline(resumed.out_dir)
    for (name, p), q in zip(a.unet.named_parameters(), b.unet.parameters()):
        assert torch.equal(p, q), name
    assert [d for d in (tmp_path / "cut" / "checkpoints").iterdir()] and \
        all(".tmp" not in d.name for d in (tmp_path / "cut" / "checkpoints").iterdir())


def test_trained_vae_and_v_prediction(sibling_pairs, tmp_path):
    from egoframe.models.tiny import TinyConfig, tiny_components

    vae_dir = tmp_path / "vae"
    vae = tiny_components(TinyConfig(resolution=32, vae_channels=(16, 32)), seed=3)["vae"]
    vae.save_pretrained(vae_dir)
    result = train_sibling(_config(sibling_pairs, tmp_path / "run", "rp2p", vae=str(vae_dir),
                                   prediction_type="v_prediction"), progress=False)
    pipe = load_sibling_pipeline(result.out_dir)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    for (name, p), q in zip(pipe.vae.state_dict().items(), vae.state_dict().values()):
        assert torch.equal(p, q), name  # the given VAE, not a fresh random one
    with pytest.raises(ConfigError, match="not a VAE directory"):
        train_sibling(_config(sibling_pairs, tmp_path / "bad", "rp2p", vae=str(tmp_path)), progress=False)


def test_stable_diffusion_directory_initialises_the_editor(sibling_pairs, tiny_sd_dir, tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    result = train_sibling(_config(sibling_pairs, tmp_path / "run", "rp2p", init=str(tiny_sd_dir), max_steps=1),
                           progress=False)
    pipe = load_sibling_pipeline(result.out_dir)
    sd_unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir, subfolder="unet")
    assert pipe.unet.config.in_channels == 8  # grown from SD's 4 input channels
    assert pipe.unet.config.block_out_channels == sd_unet.config.block_out_channels
    sd_text = CLIPTextModel.from_pretrained(tiny_sd_dir, subfolder="text_encoder")
    for (name, p), q in zip(pipe.text_encoder.state_dict().items(), sd_text.state_dict().values()):
        assert torch.equal(p, q), name  # frozen: still SD's
    with pytest.raises(ConfigError, match="neither 'tiny'"):
        train_sibling(_config(sibling_pairs, tmp_path / "bad", "rp2p", init=str(tmp_path / "nope")), progress=False)
