"""The sibling pipeline: every connector generates with dual CFG, saves, and reloads bit-identically."""

from __future__ import annotations

import pytest
import torch

from egoframe.errors import InputError, ModelLoadError
from egoframe.siblings import llm
from egoframe.siblings.connectors import CONNECTORS, SiblingCondition
from egoframe.siblings.pipeline import SiblingPipeline, guided_noise, load_sibling_pipeline
from tests.siblings.conftest import TINY, tiny_vllm


def _pipe(system, parts):
    vllm = tiny_vllm()
    if system != "rp2p":
        llm.add_edit_tokens(vllm, llm.edit_token_names(system, TINY[system]["num_llm_tokens"]))
    torch.manual_seed(0)
    connector = CONNECTORS[system](**TINY[system]).eval()
    return SiblingPipeline(connector=connector, **parts).attach_vllm(vllm, generate_answers=(system == "mgie"))


@pytest.mark.parametrize("system", ["smartedit", "mgie", "rp2p"])
def test_generate_save_load_same_output(system, tiny_parts, tmp_path):
    pipe = _pipe(system, tiny_parts)
    image = torch.zeros(2, 3, 32, 32)
    kwargs = dict(num_inference_steps=2, output_type="pt", progress=False, image_guidance_scale=1.5)
    first = pipe(image, ["take cup", "i am thirsty"], generator=torch.Generator().manual_seed(1), **kwargs).images
    assert first.shape == (2, 3, 32, 32) and torch.isfinite(first).all()
    pipe.save_pretrained(tmp_path)
    loaded = load_sibling_pipeline(str(tmp_path))
    assert loaded.system == system
    again = loaded(image, ["take cup", "i am thirsty"], generator=torch.Generator().manual_seed(1), **kwargs).images
    assert torch.allclose(first, again, atol=1e-5)


def test_guidance_is_ip2p_eq3_with_residual_only_in_the_text_branch(tiny_parts):
    """With s_x = s_c = 1, ε equals the fully conditioned branch, residual included."""
    unet, scheduler = tiny_parts["unet"], tiny_parts["scheduler"]
    scheduler.set_timesteps(2)
    t = scheduler.timesteps[0]
    g = torch.Generator().manual_seed(0)
    latents, image = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 4, 16, 16, generator=g)
    cond = SiblingCondition(torch.randn(1, 77, 32, generator=g), conv_in_residual=torch.randn(1, 16, 16, 16,
                                                                                             generator=g))
    null = SiblingCondition(torch.randn(1, 77, 32, generator=g))
    eps = guided_noise(unet, scheduler, latents, t, image, cond, null, 1.0, 1.0)
    from egoframe.siblings.connectors import conv_in_residual

    with conv_in_residual(unet, cond.conv_in_residual):
        direct = unet(torch.cat([scheduler.scale_model_input(latents, t), image], 1), t,
                      encoder_hidden_states=cond.states).sample
    assert torch.allclose(eps, direct, atol=1e-5)


def test_clear_errors(tiny_parts, tmp_path):
    pipe = _pipe("mgie", tiny_parts)
    with pytest.raises(InputError, match="instruction is empty"):
        pipe(torch.zeros(1, 3, 32, 32), "  ", num_inference_steps=1, progress=False)
    other = tiny_vllm()  # no [IMG] tokens in its tokenizer
    with pytest.raises(ModelLoadError, match="lacks the mgie tokens"):
        SiblingPipeline(connector=pipe.connector, **tiny_parts).attach_vllm(other)
    with pytest.raises(ModelLoadError, match="not a sibling model"):
        load_sibling_pipeline(str(tmp_path))


@pytest.mark.parametrize("system", ["smartedit", "mgie"])
def test_cross_attention_keys_are_reused_and_change_nothing(system, tiny_parts, monkeypatch):
    from diffusers.models.attention_processor import Attention

    pipe = _pipe(system, tiny_parts)
    layers = [m for m in pipe.unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    calls = [0]
    for module in layers:
        forward = module.to_k.forward
        monkeypatch.setattr(module.to_k, "forward", lambda x, _f=forward: (calls.__setitem__(0, calls[0] + 1), _f(x))[1])
    image = torch.zeros(1, 3, 32, 32)
    kwargs = dict(num_inference_steps=3, output_type="pt", progress=False)
    fast = pipe(image, "take cup", generator=torch.Generator().manual_seed(1), **kwargs).images
    assert calls[0] == len(layers) > 0  # once per call, not once per step
    monkeypatch.setattr(pipe, "cache_cross_attention", False)
    monkeypatch.setattr(pipe, "use_inference_mode", False)
    slow = pipe(image, "take cup", generator=torch.Generator().manual_seed(1), **kwargs).images
    assert torch.equal(fast, slow)
