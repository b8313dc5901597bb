"""Cross-attention K/V computed once per sampling call, and sampling under inference mode.

Both are speed changes only: every test here checks that the frames are bit-identical to the uncached,
no_grad path, and that the saving really happens (the K/V projections run once per condition, not per step).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from PIL import Image

from egoframe.models.kv_cache import CachedCrossAttnProcessor, cached_cross_attention
from egoframe.pipelines.baselines import SDEditPipeline
from egoframe.pipelines.loading import load_pipeline


def _frame():
    img = np.full((32, 32, 3), 140, np.uint8)
    img[4:14, 6:16] = (210, 40, 40)
    return Image.fromarray(img)


def _vllm(pipe, batch=1):
    c = pipe.conditioning.config
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(batch, c.num_text_tokens)
    mask[:, :9] = 1
    return dict(vllm_image_tokens=torch.randn(batch, c.num_image_tokens, c.d_llm, generator=g),
                vllm_text_tokens=torch.randn(batch, c.num_text_tokens, c.d_llm, generator=g) * mask[..., None],
                vllm_text_mask=mask)


def _run(pipe, steps=4, **kw):
    return pipe([_frame(), _frame().transpose(Image.FLIP_LEFT_RIGHT)], "take cup",
                description="the person takes the red cup", num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0), output_type="pt", progress=False, **kw).images


def _cross_attention(unet):
    return [m for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]


def _count_key_projections(unet, monkeypatch) -> list[int]:
    calls = [0]
    for module in _cross_attention(unet):
        forward = module.to_k.forward

        def spy(x, _forward=forward):
            calls[0] += 1
            return _forward(x)

        monkeypatch.setattr(module.to_k, "forward", spy)
    return calls


@pytest.fixture(scope="module")
def lego(tiny_lego_dir):
    return load_pipeline(tiny_lego_dir)


@pytest.fixture(scope="module")
def desc(tiny_desc_dir):
    return load_pipeline(tiny_desc_dir)


@pytest.mark.parametrize("which", ["desc", "lego"])
def test_cached_keys_values_give_bit_identical_frames(which, desc, lego, monkeypatch):
    pipe = desc if which == "desc" else lego
    extra = _vllm(pipe, 2) if which == "lego" else {}  # lego: a padded VLLM answer, i.e. an attention mask
    fast = _run(pipe, **extra)
    monkeypatch.setattr(pipe, "cache_cross_attention", False)
    monkeypatch.setattr(pipe, "use_inference_mode", False)
    slow = _run(pipe, **extra)
    assert torch.equal(fast, slow)


def test_keys_are_projected_once_per_call_not_once_per_step(desc, monkeypatch):
    layers = len(_cross_attention(desc.unet))
    assert layers > 0
    calls = _count_key_projections(desc.unet, monkeypatch)
    _run(desc, steps=5)
    assert calls[0] == layers  # one batched [c, ∅, ∅] condition, reused by all 5 steps
    calls[0] = 0
    monkeypatch.setattr(desc, "cache_cross_attention", False)
    _run(desc, steps=5)
    assert calls[0] == 5 * layers


def test_unguided_steps_cache_their_own_condition(desc, monkeypatch):
    calls = _count_key_projections(desc.unet, monkeypatch)
    _run(desc, steps=4, guidance_interval=(0.5, 1.0))  # 2 steps on C alone, 2 on the batched [c, ∅, ∅]
    assert calls[0] == 2 * len(_cross_attention(desc.unet))


def test_processors_are_restored_after_a_call_and_after_an_error(desc, monkeypatch):
    before = [type(m.processor) for m in _cross_attention(desc.unet)]
    assert set(before) == {AttnProcessor2_0}
    _run(desc, steps=2)
    assert [type(m.processor) for m in _cross_attention(desc.unet)] == before

    def broken(*args, **kwargs):
        raise RuntimeError("scheduler failed")

    monkeypatch.setattr(desc.scheduler, "step", broken)
    with pytest.raises(RuntimeError, match="scheduler failed"):
        _run(desc, steps=2)
    assert [type(m.processor) for m in _cross_attention(desc.unet)] == before


def test_other_processors_and_training_are_left_alone(desc):
    unet = desc.unet
    with torch.no_grad(), cached_cross_attention(unet) as swapped:
        assert swapped == len(_cross_attention(unet))
        assert all(isinstance(m.processor, CachedCrossAttnProcessor) for m in _cross_attention(unet))
    with cached_cross_attention(unet) as swapped:  # gradients on: W_k, W_v need their gradient every step
        assert swapped == 0
    module = _cross_attention(unet)[0]
    old = module.processor
    module.processor = AttnProcessor()  # e.g. a user's own processor
    try:
        with torch.no_grad(), cached_cross_attention(unet) as swapped:
            assert swapped == len(_cross_attention(unet)) - 1
            assert type(module.processor) is AttnProcessor
    finally:
        module.processor = old


def test_a_new_condition_or_mask_is_never_served_stale_values():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8).eval()
    reference, cached = AttnProcessor2_0(), CachedCrossAttnProcessor()
    x = torch.randn(2, 5, 16)
    a, b = torch.randn(2, 7, 12), torch.randn(2, 7, 12)
    mask = torch.ones(2, 7)
    mask[:, 4:] = 0
    bias = (1 - mask)[:, None] * -10000.0
    other = bias.roll(1, dims=-1)  # same shape, other positions hidden
    with torch.no_grad():
        for states, m in ((a, None), (b, None), (a, None), (a, bias), (a, bias.clone()), (a, other), (a, None)):
            assert torch.equal(cached(attn, x, states, m), reference(attn, x, states, m))
        assert len(cached.cache) == 2  # a and b; the mask changes replaced a's entry, equal masks reused it
        a.mul_(2)  # modified in place: its version counter moved
        assert torch.equal(cached(attn, x, a), reference(attn, x, a))


def test_pt_output_is_an_ordinary_tensor(desc):
    out = _run(desc, steps=2)
    assert not out.is_inference()
    out.add_(0)  # in-place works outside inference mode
    assert (out * torch.ones_like(out, requires_grad=True)).sum().requires_grad


def test_sdedit_is_cached_and_unchanged(tiny_config, monkeypatch):
    from egoframe.models.tiny import tiny_components

    parts = tiny_components(tiny_config, ablation="labels", seed=0)
    parts["unet"] = UNet2DConditionModel.from_config({**parts["unet"].config, "in_channels": 4})
    pipe = SDEditPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    calls = _count_key_projections(pipe.unet, monkeypatch)
    kw = dict(strength=0.8, num_inference_steps=5, guidance_scale=3.0, output_type="pt", progress=False)
    fast = pipe(_frame(), "take cup", generator=torch.Generator().manual_seed(0), **kw).images
    assert calls[0] == len(_cross_attention(pipe.unet))
    monkeypatch.setattr(pipe, "cache_cross_attention", False)
    slow = pipe(_frame(), "take cup", generator=torch.Generator().manual_seed(0), **kw).images
    assert torch.equal(fast, slow)
