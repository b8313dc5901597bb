import pytest
import torch

from egoframe.models.conditioning import ABLATIONS, LegoConditioning, LegoConditioningConfig


def test_sd15_sizes_give_410_by_768():
    # Built from the config alone (random init): SD 1.5 width, LLaVA-1.5-13B hidden size.
    cond = LegoConditioning.from_typed_config(LegoConditioningConfig())
    assert cond.sequence_length == 410
    b = 2
    out, mask = cond(
        torch.randn(b, 77, 768),
        vllm_image_tokens=torch.randn(b, 256, 5120),
        vllm_text_tokens=torch.randn(b, 77, 5120),
        vllm_text_mask=torch.ones(b, 77),
    )
    assert out.shape == (b, 410, 768)
    assert mask.shape == (b, 410)


@pytest.mark.parametrize("name,length", [("labels", 7), ("descriptions", 7), ("desc+text", 7 + 5), ("desc+image", 7 + 3), ("lego", 7 + 3 + 5)])
def test_ablations_are_config_switches(name, length):
    cond = LegoConditioning(cross_attention_dim=16, d_llm=8, num_text_encoder_tokens=7, num_image_tokens=3,
                            num_text_tokens=5, text_transformer_heads=4, **ABLATIONS[name])
    out, _ = cond(torch.randn(1, 7, 16), torch.randn(1, 3, 8), torch.randn(1, 5, 8))
    assert out.shape == (1, length, 16)
    assert cond.sequence_length == length
    has_params = any(True for _ in cond.parameters())
    assert has_params == (name not in ("labels", "descriptions"))


def _small(**kw):
    torch.manual_seed(0)
    return LegoConditioning(cross_attention_dim=16, d_llm=8, num_text_encoder_tokens=7, num_image_tokens=3,
                            num_text_tokens=5, text_transformer_heads=4, **kw)


def test_text_mask_hides_padding_only_when_enabled():
    text = torch.randn(1, 7, 16)
    h_i = torch.randn(1, 3, 8)
    h_t = torch.randn(1, 5, 8)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]])
    h_t_other_padding = h_t.clone()
    h_t_other_padding[:, 2:] = torch.randn(1, 3, 8)
    masked = _small(use_text_mask=True)
    a, mask_a = masked(text, h_i, h_t, mask)
    b, _ = masked(text, h_i, h_t_other_padding, mask)
    # With the mask the real tokens' outputs ignore whatever sits in the padding.
    assert torch.allclose(a[:, 10:12], b[:, 10:12], atol=1e-6)
    assert mask_a[0, -5:].tolist() == [1, 1, 0, 0, 0]
    unmasked = _small(use_text_mask=False)  # the public code's behaviour
    c, mask_c = unmasked(text, h_i, h_t, mask)
    d, _ = unmasked(text, h_i, h_t_other_padding, mask)
    assert mask_c is None
    assert not torch.allclose(c[:, 10:12], d[:, 10:12], atol=1e-4)


def test_empty_answer_mask_does_not_produce_nan():
    cond = _small(use_text_mask=True)
    out, mask = cond(torch.randn(2, 7, 16), torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.zeros(2, 5))
    assert torch.isfinite(out).all()
    assert mask[:, 10].tolist() == [1, 1]


def test_drop_zeroes_vllm_tokens_per_row():
    cond = _small()
    text = torch.randn(2, 7, 16)
    h_i, h_t = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    dropped, _ = cond(text, h_i, h_t, drop_vllm=torch.tensor([False, True]))
    zeros, _ = cond(text, torch.zeros_like(h_i), torch.zeros_like(h_t))
    kept, _ = cond(text, h_i, h_t)
    assert torch.allclose(dropped[1], zeros[1], atol=1e-6)
    assert torch.allclose(dropped[0], kept[0], atol=1e-6)
    assert torch.equal(dropped[:, :7], text)  # ψ passes through untouched


def test_public_code_null_condition_is_zeros_after_projection():
    # REFERENCE.md: img = (1 - mask)·projection_img(H_i); txt = (1 - mask)·self_attn_mix(projection_txt(H_t)).
    cond = _small(null_vllm="outputs")
    text = torch.randn(2, 7, 16)
    h_i, h_t = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    dropped, _ = cond(text, h_i, h_t, drop_vllm=torch.tensor([False, True]))
    kept, _ = cond(text, h_i, h_t)
    assert torch.equal(dropped[1, 7:], torch.zeros(8, 16))  # the VLLM blocks: exact zeros
    assert torch.allclose(dropped[0], kept[0], atol=1e-6)
    assert torch.equal(dropped[:, :7], text)
    # egoframe's default differs: the null blocks are σ/μ/π of zero input (σ(0) = its bias), not zeros.
    inputs = _small()
    default, _ = inputs(text, h_i, h_t, drop_vllm=torch.tensor([True, True]))
    assert torch.allclose(default[0, 7:10], inputs.image_proj.bias.expand(3, -1), atol=1e-6)
    with pytest.raises(ValueError, match="null_vllm"):
        _small(null_vllm="nowhere")


def test_bad_shapes_name_the_argument():
    cond = _small()
    with pytest.raises(ValueError, match="vllm_image_tokens"):
        cond(torch.randn(1, 7, 16), torch.randn(1, 4, 8), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="vllm_text_tokens are required"):
        cond(torch.randn(1, 7, 16), torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="text_source"):
        LegoConditioning(text_source="caption")


def test_save_load_round_trip(tmp_path):
    cond = _small()
    cond.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    again = LegoConditioning.from_pretrained(tmp_path)
    assert again.config.num_image_tokens == 3
    x = (torch.randn(1, 7, 16), torch.randn(1, 3, 8), torch.randn(1, 5, 8))
    assert torch.equal(cond(*x)[0], again(*x)[0])
