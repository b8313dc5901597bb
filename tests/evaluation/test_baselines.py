"""Baselines of LEGO Table 1 in the framework: the t2i training mode, SDEdit, ProxEdit, `--method`."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from egoframe.errors import ConfigError, InputError
from egoframe.pipelines.baselines import ProxEditPipeline, SDEditPipeline, as_method, proximal_guidance
from tests.training.conftest import make_pairs, train_config


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(str(tmp_path_factory.mktemp("pairs")), n=8)


@pytest.fixture(scope="module")
def t2i_run(pairs, tmp_path_factory):
    from egoframe.training.trainer import train

    config = train_config(pairs, tmp_path_factory.mktemp("t2i") / "run", ablation="labels", max_steps=2)
    config.model.mode = "t2i"
    return train(config, progress=False)


@pytest.fixture(scope="module")
def ip2p_dir(tmp_path_factory, tiny_config):
    from egoframe.pipelines.lego import tiny_pipeline

    path = tmp_path_factory.mktemp("ip2p")
    tiny_pipeline(tiny_config, ablation="ip2p", seed=0).save_pretrained(path)
    return str(path)


def test_soft_and_hard_proximal_operators_match_their_definitions():
    d = torch.tensor([[-3.0, -1.0, 0.5, 2.0, 4.0]]).view(1, 1, 1, 5)
    tau = torch.quantile(d.abs().flatten(1), 0.5, dim=1).item()  # median of |d| = 2
    assert tau == 2.0
    soft = proximal_guidance(d, 0.5, "soft").flatten().tolist()
    assert soft == [-1.0, 0.0, 0.0, 0.0, 2.0]  # sign(d) * max(|d| - 2, 0)
    hard = proximal_guidance(d, 0.5, "hard").flatten().tolist()
    assert hard == [-3.0, 0.0, 0.0, 2.0, 4.0]  # d where |d| >= 2
    # quantile 0: τ = min |d| = 0.5; hard keeps everything, soft shrinks every element by 0.5
    assert torch.equal(proximal_guidance(d, 0.0, "hard"), d)
    assert proximal_guidance(d, 0.0, "soft").flatten().tolist() == [-2.5, -0.5, 0.0, 1.5, 3.5]
    with pytest.raises(InputError, match="quantile"):
        proximal_guidance(d, 1.0)
    with pytest.raises(InputError, match="mode"):
        proximal_guidance(d, 0.5, "l2")


def test_proxedit_changes_only_the_guidance(ip2p_dir):
    from egoframe.pipelines.loading import load_pipeline

    pipe = load_pipeline(ip2p_dir)
    prox = as_method(pipe, "proxedit")
    assert isinstance(prox, ProxEditPipeline)
    image = Image.fromarray(np.full((32, 32, 3), 120, np.uint8))
    # Float outputs: on a random tiny model the text-guidance term is small, so its shrinkage can vanish
    # in uint8 rounding while still changing the result.
    common = dict(num_inference_steps=3, image_guidance_scale=1.5, guidance_scale=3.0, output_type="pt",
                  progress=False)
    plain = pipe(image, "take cup", generator=torch.Generator().manual_seed(0), **common).images
    # quantile 0 with hard thresholding keeps every element: exactly the IP2P guidance
    same = prox(image, "take cup", generator=torch.Generator().manual_seed(0), prox_quantile=0.0, prox_mode="hard",
                **common).images
    assert torch.equal(plain, same)
    other = prox(image, "take cup", generator=torch.Generator().manual_seed(0), prox_quantile=0.9, **common).images
    assert (other - plain).abs().max() > 0


def test_t2i_mode_trains_a_four_channel_unet_and_sdedit_samples_it(t2i_run, pairs):
    from egoframe.pipelines.loading import load_pipeline

    pipe = load_pipeline(t2i_run.model_dir)
    assert isinstance(pipe, SDEditPipeline)
    assert pipe.unet.config.in_channels == 4
    assert os.path.exists(os.path.join(os.path.dirname(t2i_run.model_dir), "samples", "final.png"))
    image = Image.open(os.path.join(pairs, "shards", "0000_in.png"))
    kw = dict(num_inference_steps=4, guidance_scale=2.0, output_type="np", progress=False)
    low = pipe(image, "take cup", strength=0.25, generator=torch.Generator().manual_seed(0), **kw).images[0]
    high = pipe(image, "take cup", strength=1.0, generator=torch.Generator().manual_seed(0), **kw).images[0]
    with torch.no_grad():
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        ref = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mode()).sample[0]
    ref = ref.permute(1, 2, 0).clamp(-1, 1).add(1).mul(127.5).round().numpy()
    # a small strength stays nearer to the (VAE-reconstructed) input than pure text-to-image does
    assert np.abs(low - ref).mean() < np.abs(high - ref).mean()
    with pytest.raises(InputError, match="strength"):
        pipe(image, "take cup", strength=0.0, **kw)
    with pytest.raises(InputError, match="image-conditioned"):
        as_method(pipe, "ip2p")


def test_method_checks_the_model(t2i_run, tiny_lego_dir, ip2p_dir):
    from egoframe.pipelines.loading import load_pipeline

    with pytest.raises(InputError, match="text-to-image"):
        as_method(load_pipeline(ip2p_dir), "sdedit")
    with pytest.raises(InputError, match="action labels only"):
        as_method(load_pipeline(tiny_lego_dir), "proxedit")
    with pytest.raises(InputError, match="unknown method"):
        as_method(load_pipeline(ip2p_dir), "dalle")


def test_t2i_refuses_vllm_variants(pairs, tmp_path):
    from egoframe.training.config import parse_config

    with pytest.raises(ConfigError, match="t2i"):
        parse_config({"data": {"root": pairs, "vllm_cache": pairs}, "log": {"out_dir": str(tmp_path)},
                      "model": {"ablation": "lego", "mode": "t2i"}})


def test_t2i_resume_is_exact(pairs, tmp_path):
    """Stopping after 2 steps and resuming to 4 gives the losses of a straight 4-step run."""
    from egoframe.training.trainer import read_losses, train

    straight = train_config(pairs, tmp_path / "a", ablation="labels", max_steps=4)
    straight.model.mode = "t2i"
    straight.log.num_samples = 0
    train(straight, progress=False)
    first = straight.model_copy(deep=True)
    first.log.out_dir = str(tmp_path / "b")
    first.optim.max_steps = 2
    train(first, progress=False)
    first.optim.max_steps = 4
    train(first, resume=True, progress=False)
    assert read_losses(str(tmp_path / "b")) == read_losses(str(tmp_path / "a"))


def test_generate_cli_methods(ip2p_dir, t2i_run, pairs, tmp_path):
    from typer.testing import CliRunner

    from egoframe.cli.main import app

    image = os.path.join(pairs, "shards", "0000_in.png")
    runner = CliRunner()
    for method, model in (("ip2p", ip2p_dir), ("proxedit", ip2p_dir), ("sdedit", t2i_run.model_dir)):
        out = tmp_path / f"{method}.png"
        result = runner.invoke(app, ["generate", "--image", image, "--action", "take cup", "--model", model,
                                     "--method", method, "--steps", "2", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert Image.open(out).size == (32, 32)
