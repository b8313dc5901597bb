"""Connector shapes, exact zero-init behaviour, save/load, and the BERT-base -> QFormer initialisation."""

from __future__ import annotations

import pytest
import torch

from egoframe.errors import ModelLoadError
from egoframe.siblings.connectors import (
    MgieConnector,
    Rp2pConnector,
    SmartEditConnector,
    bert_to_qformer_state,
    conv_in_residual,
    load_bert_into_qformer,
)
from tests.siblings.conftest import MGIE_TINY, RP2P_TINY, SMARTEDIT_TINY


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_smartedit_shapes_and_layout():
    con = SmartEditConnector(**SMARTEDIT_TINY)
    out = con(_randn(2, 4, 16), _randn(2, 16, 16, seed=1))
    assert out.states.shape == (2, 77, 32)
    assert out.conv_in_residual.shape == (2, 16, 16, 16)
    # cross-attention to the LLM states on every 2nd layer only (layers 0, 2, ...)
    layers = con.qformer.encoder.layer
    assert [getattr(layer, "has_cross_attention", False) for layer in layers] == [True, False]
    assert layers[0].crossattention.attention.key.in_features == 16  # reads d_llm directly


def test_smartedit_zero_init_branches_change_nothing(tiny_parts):
    """At step 0: condition == f exactly, residual == 0, and the hooked UNet's output is bit-identical."""
    torch.manual_seed(0)
    con = SmartEditConnector(**SMARTEDIT_TINY).eval()  # eval: the QFormer's BERT dropout would differ per call
    tokens, features = _randn(2, 4, 16), _randn(2, 16, 16, seed=1)
    out = con(tokens, features)
    assert torch.equal(out.states, con.qformer_states(tokens))
    assert torch.count_nonzero(out.conv_in_residual) == 0
    unet = tiny_parts["unet"]
    x, t = _randn(2, 8, 16, 16, seed=2), torch.tensor([10, 500])
    plain = unet(x, t, encoder_hidden_states=con.qformer_states(tokens)).sample
    with conv_in_residual(unet, out.conv_in_residual):
        hooked = unet(x, t, encoder_hidden_states=out.states).sample
    assert torch.equal(plain, hooked)
    # ...and once the zero-init layers move, both branches do change the output (the test can fail).
    with torch.no_grad():
        con.text_out.bias.fill_(0.3)
        con.image_out.bias.fill_(0.3)
    moved = con(tokens, features)
    assert torch.allclose(moved.states, con.qformer_states(tokens) + 0.15)
    with conv_in_residual(unet, moved.conv_in_residual):
        changed = unet(x, t, encoder_hidden_states=con.qformer_states(tokens)).sample
    assert not torch.allclose(plain, changed)
    # the hook is scoped: outside the block the UNet is plain again
    assert torch.equal(unet(x, t, encoder_hidden_states=con.qformer_states(tokens)).sample, plain)


def test_conv_in_residual_shape_mismatch_is_clear(tiny_parts):
    with pytest.raises(ValueError, match="conv_in residual"):
        with conv_in_residual(tiny_parts["unet"], torch.zeros(1, 320, 32, 32)):
            tiny_parts["unet"](torch.zeros(1, 8, 16, 16), 1, encoder_hidden_states=torch.zeros(1, 77, 32))


def test_mgie_and_rp2p_shapes():
    assert MgieConnector(**MGIE_TINY)(_randn(3, 4, 16)).states.shape == (3, 77, 32)
    mask = torch.ones(3, 77)
    out = Rp2pConnector(**RP2P_TINY)(_randn(3, 77, 16), mask)
    assert out.states.shape == (3, 77, 32) and torch.equal(out.mask, mask)
    with pytest.raises(ValueError, match="llm_token_states must have shape"):
        MgieConnector(**MGIE_TINY)(_randn(3, 8, 16))


@pytest.mark.parametrize("cls,kwargs", [(SmartEditConnector, SMARTEDIT_TINY), (MgieConnector, MGIE_TINY),
                                        (Rp2pConnector, RP2P_TINY)])
def test_save_load_round_trip_is_safetensors(cls, kwargs, tmp_path):
    con = cls(**kwargs)
    con.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = cls.from_pretrained(tmp_path, use_safetensors=True)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == \
        {k: v for k, v in con.config.items() if not k.startswith("_")}
    for (name, a), b in zip(con.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def _tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(3)
    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                                vocab_size=50, max_position_embeddings=40))
    bert.save_pretrained(tmp_path, safe_serialization=True)
    return bert


def test_qformer_initialised_from_a_bert_directory(tmp_path):
    bert = _tiny_bert(tmp_path)
    con = SmartEditConnector(**SMARTEDIT_TINY)
    cross_before = con.qformer.encoder.layer[0].crossattention.attention.key.weight.clone()
    copied = load_bert_into_qformer(con, str(tmp_path))
    assert copied == 2 + 2 * 16  # embeddings LayerNorm + 8 weight/bias pairs per layer
    layer = con.qformer.encoder.layer[1]
    assert torch.equal(layer.attention.attention.query.weight, bert.encoder.layer[1].attention.self.query.weight)
    assert torch.equal(layer.output_query.dense.weight, bert.encoder.layer[1].output.dense.weight)
    assert torch.equal(con.qformer.layernorm.weight, bert.embeddings.LayerNorm.weight)
    # cross-attention has no BERT counterpart and keeps its initialisation
    assert torch.equal(con.qformer.encoder.layer[0].crossattention.attention.key.weight, cross_before)


def test_bert_loading_errors(tmp_path):
    _tiny_bert(tmp_path)
    wide = dict(SMARTEDIT_TINY, qformer_hidden_size=64, qformer_heads=4)
    with pytest.raises(ModelLoadError, match="has shape"):
        load_bert_into_qformer(SmartEditConnector(**wide), str(tmp_path))
    with pytest.raises(ModelLoadError, match="needs config.json"):
        load_bert_into_qformer(SmartEditConnector(**SMARTEDIT_TINY), str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="layers"):
        bert_to_qformer_state({"embeddings.LayerNorm.weight": torch.zeros(2)}, num_layers=1)
