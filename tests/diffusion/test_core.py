"""The shared diffusion core: guidance formulas, the guidance interval, scheduler stepping (issue 20, step 1)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, EulerAncestralDiscreteScheduler, UNet2DConditionModel, UniPCMultistepScheduler
from PIL import Image

from egoframe.diffusion import cfg, check_interval, dual_cfg, is_guided, step_kwargs
from egoframe.errors import InputError


def _eps(seed):
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_dual_cfg_is_instructpix2pix_eq_3():
    text, image, uncond = _eps(0), _eps(1), _eps(2)
    # written out term by term: e(0,0) + s_x (e(x,0) - e(0,0)) + s_c (e(x,c) - e(x,0))
    want = uncond + 2.5 * (image - uncond) + 5.0 * (text - image)
    assert torch.allclose(dual_cfg(text, image, uncond, 2.5, 5.0), want, atol=1e-6)
    assert torch.allclose(dual_cfg(text, image, uncond, 1.0, 1.0), text, atol=1e-6)  # both scales 1: e(x, c)
    assert torch.allclose(dual_cfg(text, image, uncond, 1.0, 0.0), image, atol=1e-6)  # no text guidance: e(x, 0)
    assert torch.allclose(dual_cfg(text, image, uncond, 0.0, 0.0), uncond, atol=1e-6)


def test_cfg_is_ho_salimans():
    cond, null = _eps(3), _eps(4)
    assert torch.allclose(cfg(cond, null, 1.0), cond, atol=1e-6) and torch.allclose(cfg(cond, null, 0.0), null, atol=1e-6)
    assert torch.allclose(cfg(cond, null, 7.5), null + 7.5 * (cond - null), atol=1e-6)


def test_guidance_interval():
    assert check_interval((0, 0.6)) == (0.0, 0.6)
    guided = [is_guided(i, 10, (0.0, 0.6)) for i in range(10)]
    assert guided == [True] * 6 + [False] * 4
    assert all(is_guided(i, 20, (0.0, 1.0)) for i in range(20))
    for bad in ((0.7, 0.2), (0, 1.5), "ab", None):
        with pytest.raises(InputError):
            check_interval(bad)


def test_step_kwargs_pass_the_generator_only_where_taken():
    g = torch.Generator()
    assert step_kwargs(EulerAncestralDiscreteScheduler(), g) == {"generator": g}
    assert step_kwargs(DDPMScheduler(), g) == {"generator": g}
    assert step_kwargs(UniPCMultistepScheduler(), g) == {}


def test_baseline_and_lego_sample_with_a_deterministic_scheduler(tiny_config):
    """The baselines' and siblings' loops once always passed generator=, which UniPC refuses."""
    from egoframe.models.tiny import tiny_components
    from egoframe.pipelines.baselines import SDEditPipeline

    parts = tiny_components(tiny_config, ablation="labels", seed=0)
    parts["unet"] = UNet2DConditionModel.from_config({**parts["unet"].config, "in_channels": 4})
    parts["scheduler"] = UniPCMultistepScheduler.from_config(parts["scheduler"].config)
    pipe = SDEditPipeline(**parts)
    frame = Image.new("RGB", (32, 32), (120, 90, 60))
    out = pipe(frame, "take cup", strength=0.8, num_inference_steps=3, guidance_scale=3.0, output_type="pt",
               progress=False, generator=torch.Generator().manual_seed(0)).images
    assert out.shape[0] == 1 and torch.isfinite(out).all()


def test_diffusion_target_and_cfg_dropout():
    from egoframe.diffusion import cfg_dropout, diffusion_target

    sched = DDPMScheduler(prediction_type="v_prediction")
    z0, noise, t = _eps(5), _eps(6), torch.tensor([10, 900])
    a = sched.alphas_cumprod[t].sqrt()[:, None, None, None]
    s = (1 - sched.alphas_cumprod[t]).sqrt()[:, None, None, None]
    assert torch.allclose(diffusion_target(sched, z0, noise, t, "v_prediction"), a * noise - s * z0, atol=1e-6)
    assert torch.equal(diffusion_target(sched, z0, noise, t, "epsilon"), noise)
    with pytest.raises(ValueError):
        diffusion_target(sched, z0, noise, t, "flow")
    u = torch.tensor([0.01, 0.06, 0.12, 0.5])
    drop_text, drop_image = cfg_dropout(u, 0.05, 0.05, 0.05)
    assert drop_text.tolist() == [True, True, False, False]  # text only, both
    assert drop_image.tolist() == [False, True, True, False]  # both, image only
