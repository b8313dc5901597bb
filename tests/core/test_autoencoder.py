"""The lossless patch autoencoder and the pipelines built on it (frames in at 128 px come out at 128 px)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from egoframe.errors import ModelLoadError
from egoframe.models.autoencoder import PatchAutoencoder, downsampling_factor, load_autoencoder
from egoframe.models.tiny import TinyConfig, tiny_components
from egoframe.pipelines.lego import tiny_pipeline
from egoframe.pipelines.loading import load_pipeline
from tests.conftest import vllm_inputs


def _frames(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_round_trip_is_exact_and_latent_is_folded_pixels():
    ae = PatchAutoencoder(patch_size=4, sample_size=32).fit(_frames())
    x = _frames(seed=1)
    dist = ae.encode(x).latent_dist
    assert dist.mode().shape == (3, 48, 8, 8)
    assert torch.equal(dist.std, torch.zeros_like(dist.std))  # deterministic: sampling returns the mode
    assert torch.equal(dist.sample(), dist.mode())
    assert torch.allclose(ae.decode(dist.mode()).sample, x, atol=1e-6)
    # channel c * 16 + i * 4 + j of position (u, v) is pixel (4u + i, 4v + j) of colour c, less its mean
    z = dist.mode()
    assert torch.isclose(z[0, 1 * 16 + 2 * 4 + 3, 5, 6], x[0, 1, 4 * 5 + 2, 4 * 6 + 3] - ae.shift[1])


def test_fit_centres_and_scales_the_latent():
    frames = _frames(8) * 0.3 + 0.2
    ae = PatchAutoencoder(patch_size=2, sample_size=32).fit(frames)
    z = ae.encode(frames).latent_dist.mode() * ae.config.scaling_factor
    assert abs(float(z.mean())) < 1e-4
    assert abs(float(z.std()) - 1.0) < 1e-3
    assert ae.config.latent_channels == 12 and downsampling_factor(ae) == 2


def test_save_load_keeps_statistics_safetensors_only(tmp_path):
    ae = PatchAutoencoder(patch_size=4, sample_size=32).fit(_frames())
    ae.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists() and not list(tmp_path.rglob("*.bin"))
    again = load_autoencoder(str(tmp_path))
    assert isinstance(again, PatchAutoencoder)
    assert torch.equal(again.shift, ae.shift) and again.config.scaling_factor == ae.config.scaling_factor


def test_load_autoencoder_errors_name_the_cause(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_autoencoder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "VQModel"}))
    with pytest.raises(ModelLoadError, match="unknown autoencoder class 'VQModel'"):
        load_autoencoder(str(tmp_path))


def test_bad_sizes_refused():
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        PatchAutoencoder(patch_size=4).encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="latent_channels"):
        PatchAutoencoder(patch_size=4, latent_channels=4)


def _patch_config(resolution=32):
    return TinyConfig(resolution=resolution, vae_kind="patch", vae_patch=4, unet_channels=(16, 32),
                      cross_attention_dim=32, conditioning=dict(d_llm=24, num_image_tokens=4, num_text_tokens=77,
                                                                text_transformer_heads=4))


def test_tiny_unet_follows_the_patch_code():
    parts = tiny_components(_patch_config())
    assert isinstance(parts["vae"], PatchAutoencoder)
    assert parts["unet"].config.in_channels == 96 and parts["unet"].config.out_channels == 48
    assert parts["unet"].config.sample_size == 8


def test_given_autoencoder_does_not_change_the_seeded_unet():
    config = _patch_config()
    fitted = PatchAutoencoder(patch_size=4, sample_size=32).fit(_frames())
    own = tiny_components(config, seed=3)["unet"].state_dict()
    given = tiny_components(config, seed=3, vae=fitted)
    assert given["vae"] is fitted
    assert all(torch.equal(own[k], v) for k, v in given["unet"].state_dict().items())


def test_patch_pipeline_saves_loads_and_outputs_input_size(tmp_path):
    pipe = tiny_pipeline(_patch_config(), ablation="lego", seed=0)
    pipe.vae.fit(_frames())
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["vae"] == ["egoframe.models.autoencoder", "PatchAutoencoder"]
    loaded = load_pipeline(str(tmp_path))
    assert isinstance(loaded.vae, PatchAutoencoder) and loaded.resolution == 32
    assert torch.equal(loaded.vae.shift, pipe.vae.shift)
    frame = Image.fromarray(np.full((32, 32, 3), 120, dtype=np.uint8))
    out = loaded(frame, "take cup", description="the person takes the red cup", num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pil", progress=False,
                 **vllm_inputs(loaded, batch=1))
    assert out.images[0].size == (32, 32)
