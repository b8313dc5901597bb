"""The pipeline's speed options: guidance limited to an interval of the steps, and the VLLM result cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from egoframe.errors import InputError
from egoframe.pipelines.loading import load_pipeline


def _frame(shift=0):
    img = np.full((32, 32, 3), 140, np.uint8)
    img[4 + shift:14 + shift, 6:16] = (210, 40, 40)
    return Image.fromarray(img)


def _run(pipe, image=None, seed=0, steps=4, **kw):
    return pipe(image or _frame(), kw.pop("action", "take cup"), description="the person takes the red cup",
                num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), output_type="pt",
                progress=False, **kw)


@pytest.fixture(scope="module")
def desc(tiny_desc_dir):
    return load_pipeline(tiny_desc_dir)


def _unet_batches(pipe, monkeypatch) -> list[int]:
    seen = []
    forward = pipe.unet.forward

    def spy(sample, *args, **kwargs):
        seen.append(sample.shape[0])
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", spy)
    return seen


def test_steps_outside_the_interval_run_one_branch(desc, monkeypatch):
    seen = _unet_batches(desc, monkeypatch)
    _run(desc, steps=4, guidance_interval=(0.5, 1.0))
    assert seen == [1, 1, 3, 3]  # steps 0, 1 unguided (1 row), steps 2, 3 guided (3 branches batched)


def test_unguided_steps_equal_guidance_with_unit_scales(desc):
    # With s_x = s_c = 1 the formula collapses to ε(x,c): an empty interval must give the same frames.
    none = _run(desc, guidance_interval=(0.0, 0.0), image_guidance_scale=7.5, guidance_scale=1.5).images
    unit = _run(desc, image_guidance_scale=1.0, guidance_scale=1.0).images
    full = _run(desc, image_guidance_scale=7.5, guidance_scale=1.5).images
    assert torch.allclose(none, unit, atol=1e-4)
    assert (none - full).abs().max() > 1e-2  # and guidance does change the result


# (None is not bad: it means the model's sampling.json, else every step)
@pytest.mark.parametrize("bad", [(0.5, 0.2), (-0.1, 1.0), (0.0, 1.5), (0.3,), "ab"])
def test_bad_interval_is_a_clear_error(desc, bad):
    with pytest.raises(InputError, match="guidance_interval"):
        _run(desc, steps=1, guidance_interval=bad)


# ------------------------------------------------------------------------------------------ VLLM cache


@pytest.fixture()
def lego_with_vllm(tiny_lego_dir, tiny_config):
    from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer

    c = tiny_config.conditioning
    pipe = load_pipeline(tiny_lego_dir)
    tokenizer = build_word_tokenizer(["the person takes the red cup with the right hand"])
    vllm = build_tiny_vllm(tokenizer, TinyVllmConfig(
        image_size=32, patch_size=16, vision_hidden_size=16, vision_layers=2, vision_heads=2,
        text_hidden_size=c["d_llm"], text_layers=1, text_heads=2, max_positions=160), seed=0)
    return pipe.attach_vllm(vllm)


@pytest.fixture()
def vllm_calls(monkeypatch):
    import egoframe.pipelines.lego as lego  # the pipeline's own binding of extract_vllm_embeddings

    calls = []
    real = lego.extract_vllm_embeddings

    def counting(vllm, images, actions, config=None):
        calls.append(list(actions))
        return real(vllm, images, actions, config)

    monkeypatch.setattr(lego, "extract_vllm_embeddings", counting)
    return calls


def test_vllm_runs_once_for_a_sweep_over_one_input(lego_with_vllm, vllm_calls):
    outs = [_run(lego_with_vllm, seed=s, steps=1, image_guidance_scale=g) for s, g in ((0, 1.5), (1, 1.5), (2, 3.0))]
    assert len(vllm_calls) == 1
    assert outs[0].notes == outs[1].notes == outs[2].notes  # same VLLM description every time
    _run(lego_with_vllm, steps=1, action="put cup")  # another action: a new VLLM run
    _run(lego_with_vllm, image=_frame(shift=3), steps=1)  # another frame: a new VLLM run
    assert vllm_calls == [["take cup"], ["put cup"], ["take cup"]]


def test_cached_result_equals_a_fresh_one(lego_with_vllm, vllm_calls):
    first = _run(lego_with_vllm, steps=2).images  # fills the cache
    cached = _run(lego_with_vllm, steps=2).images
    lego_with_vllm.vllm_cache_size = 0  # off: the VLLM runs on every call
    fresh = _run(lego_with_vllm, steps=2).images
    assert len(vllm_calls) == 2
    assert torch.equal(first, cached) and torch.equal(cached, fresh)


def test_a_batch_repeating_one_input_sends_it_once(lego_with_vllm, vllm_calls):
    lego_with_vllm(torch.stack([torch.zeros(3, 32, 32)] * 3), ["take cup"] * 3, num_inference_steps=1,
                   output_type="pt", progress=False)
    assert vllm_calls == [["take cup"]]


def test_cache_is_bounded_and_cleared_on_attach(lego_with_vllm, vllm_calls):
    lego_with_vllm.vllm_cache_size = 2
    for shift in range(4):
        _run(lego_with_vllm, image=_frame(shift=shift), steps=1)
    assert len(lego_with_vllm._vllm_results) == 2
    _run(lego_with_vllm, image=_frame(shift=0), steps=1)  # evicted (least recently used): runs again
    assert len(vllm_calls) == 5
    lego_with_vllm.attach_vllm(lego_with_vllm.vllm)  # a (possibly changed) VLLM: nothing cached survives
    assert len(lego_with_vllm._vllm_results) == 0


def test_a_scheduler_without_a_generator_argument_works(desc):
    # UniPC's step() takes no generator (it is deterministic); the pipeline must not pass one.
    from diffusers import UniPCMultistepScheduler

    desc.scheduler, original = UniPCMultistepScheduler.from_config(desc.scheduler.config), desc.scheduler
    try:
        a = _run(desc, steps=3, seed=0).images
        b = _run(desc, steps=3, seed=0).images
    finally:
        desc.scheduler = original
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_strength_starts_from_the_noised_input_and_runs_fewer_steps(desc, monkeypatch):
    full = _run(desc, steps=4).images
    assert torch.equal(_run(desc, steps=4, strength=1.0).images, full)  # 1.0 is the papers' pure-noise start
    seen = _unet_batches(desc, monkeypatch)
    part = _run(desc, steps=4, strength=0.5).images
    assert seen == [3, 3]  # only the last half of the schedule runs
    assert (part - full).abs().max() > 1e-3
    # a tiny strength barely moves the input: the result stays closer to the input's reconstruction
    gentle = _run(desc, steps=10, strength=0.1).images
    recon = desc.decode_latents(desc.vae.encode(
        torch.from_numpy(np.asarray(_frame(), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]).latent_dist.mode()
        * desc.vae.config.scaling_factor, "pt")
    assert (gentle - recon).abs().mean() < (full - recon).abs().mean()


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_bad_strength_is_a_clear_error(desc, bad):
    with pytest.raises(InputError, match="strength"):
        _run(desc, steps=2, strength=bad)


def test_channels_last_is_the_same_model_and_saves_in_the_ordinary_layout(tiny_desc_dir, tmp_path):
    pipe = load_pipeline(tiny_desc_dir)
    base = _run(pipe).images
    pipe.enable_channels_last()
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    nhwc = _run(pipe).images
    assert torch.allclose(base, nhwc, atol=1e-4)  # other kernels, float rounding only
    pipe.save_pretrained(tmp_path / "saved")  # safetensors refuses non-contiguous tensors: converted for the save
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)  # and back afterwards
    again = load_pipeline(str(tmp_path / "saved"))
    assert all(torch.equal(a, b) for a, b in zip(again.unet.state_dict().values(), pipe.unet.state_dict().values()))
    pipe.enable_channels_last(False)
    assert pipe.unet.conv_in.weight.is_contiguous()
