"""Connectors of LEGO's sibling systems: what turns the multimodal LLM's features into the UNet's condition.

Each connector is a diffusers ``ModelMixin`` + ``ConfigMixin`` (so ``save_pretrained``/``from_pretrained``
round-trip it as safetensors) whose ``forward`` returns a :class:`SiblingCondition`: the cross-attention
states (B, 77, D), their mask, and an optional residual for the UNet's ``conv_in`` output.

- SmartEdit (Huang et al. 2024, papers/002 Sec. 3 + supp.): hidden states of 32 added LLM tokens
  -> QFormer (77 learned queries, BERT layout) -> f; Bidirectional Interaction Module (SAM's two-way
  transformer) between f and the image features v -> (f', v'); condition = f + 0.5·f' with f' through a
  zero-init Linear; v' -> 32x32 -> zero-init 1x1 conv -> added to conv_in's output.
- MGIE (Fu et al. 2024): hidden states of 8 added tokens -> Linear(d_llm->512) -> Transformer (4 encoder
  + 4 decoder layers, 77 learned queries as the decoder input) -> Linear(512->768).
- ReasonPix2Pix (papers/003 Eq. 8-9): h = F(x, I), the frozen LLaVA's last hidden states of image +
  instruction, -> LayerNorm + Linear(d_llm -> D).

Defaults are the published sizes; tests and the embedded world use tiny ones.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from egoframe.errors import ModelLoadError

SYSTEMS = ("smartedit", "mgie", "rp2p")


@dataclass
class SiblingCondition:
    """What a connector hands the UNet."""

    states: torch.Tensor  # (B, L, D) cross-attention states
    mask: torch.Tensor | None = None  # (B, L), 1 = attend; None = all visible
    conv_in_residual: torch.Tensor | None = None  # (B, C_in, h, w), added to unet.conv_in's output


def _check(tensor: torch.Tensor, tail: tuple[int, ...], name: str) -> None:
    if tensor.dim() != len(tail) + 1 or tuple(tensor.shape[1:]) != tail:
        raise ValueError(f"{name} must have shape (B, {', '.join(map(str, tail))}), got {tuple(tensor.shape)}")


# ----------------------------------------------------------------------------------- SmartEdit


class _Attention(nn.Module):
    """Multi-head attention with an internal width (SAM's downsampled cross-attention uses dim/2)."""

    def __init__(self, dim: int, heads: int, inner: int | None = None):
        super().__init__()
        inner = inner or dim
        if inner % heads:
            raise ValueError(f"attention width {inner} must be divisible by heads ({heads})")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, inner) for _ in range(3))
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]

        def split(x):  # (B, N, inner) -> (B, heads, N, inner/heads)
            return x.view(b, x.shape[1], self.heads, -1).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(split(self.q_proj(q)), split(self.k_proj(k)),
                                                         split(self.v_proj(v)))
        return self.out_proj(out.transpose(1, 2).reshape(b, q.shape[1], -1))


class _TwoWayBlock(nn.Module):
    """One block of SAM's two-way transformer (Kirillov et al. 2023, Sec. 3 / App. A): token self-attention,
    token->image cross-attention, token MLP, image->token cross-attention; post-norm, with the
    positional encodings re-added to the queries/keys of every attention."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool):
        super().__init__()
        self.self_attn = _Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_token_to_image = _Attention(dim, heads, dim // downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.cross_image_to_token = _Attention(dim, heads, dim // downsample)
        self.norm4 = nn.LayerNorm(dim)
        self.skip_first_pe = skip_first_pe

    def forward(self, tokens, image, token_pe, image_pe):
        if self.skip_first_pe:
            tokens = self.norm1(self.self_attn(tokens, tokens, tokens))
        else:
            q = tokens + token_pe
            tokens = self.norm1(tokens + self.self_attn(q, q, tokens))
        q, k = tokens + token_pe, image + image_pe
        tokens = self.norm2(tokens + self.cross_token_to_image(q, k, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        q, k = tokens + token_pe, image + image_pe
        image = self.norm4(image + self.cross_image_to_token(k, q, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    """SAM's two-way transformer: ``depth`` blocks, then a final token->image attention + norm."""

    def __init__(self, depth: int, dim: int, heads: int, mlp_dim: int, downsample: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(_TwoWayBlock(dim, heads, mlp_dim, downsample, skip_first_pe=(i == 0))
                                    for i in range(depth))
        self.final_attn = _Attention(dim, heads, dim // downsample)
        self.norm_final = nn.LayerNorm(dim)

    def forward(self, tokens, image, token_pe, image_pe):
        for layer in self.layers:
            tokens, image = layer(tokens, image, token_pe, image_pe)
        tokens = self.norm_final(tokens + self.final_attn(tokens + token_pe, image + image_pe, image))
        return tokens, image


def _sincos_2d(side: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (MAE style), (side*side, dim); fixed so that they need no training."""
    if dim % 4:
        raise ValueError(f"bim_dim {dim} must be divisible by 4 for 2-D sine-cosine positions")
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1)


class SmartEditConnector(ModelMixin, ConfigMixin):
    """LLM [IMG] tokens + image features -> (f + 0.5·f', v' residual for conv_in)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        d_llm: int = 4096,  # LLaVA-1.5-7B
        num_llm_tokens: int = 32,
        num_queries: int = 77,
        qformer_hidden_size: int = 768,  # BERT-base
        qformer_layers: int = 6,
        qformer_heads: int = 12,
        qformer_intermediate_size: int = 3072,
        cross_attention_frequency: int = 2,
        cross_attention_dim: int = 768,  # the UNet's text width (SD 1.5)
        vision_dim: int = 1024,  # CLIP ViT-L/14 penultimate-layer tokens
        vision_grid: int = 16,  # 224 px / 14
        bim_dim: int = 1024,
        bim_depth: int = 2,
        bim_heads: int = 8,
        bim_mlp_dim: int = 2048,
        interaction_scale: float = 0.5,
        conv_in_channels: int = 320,  # SD 1.5's conv_in output
        latent_grid: int = 32,  # 256 px / 8
    ):
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        if num_llm_tokens < 1 or num_queries < 1:
            raise ValueError("num_llm_tokens and num_queries must be >= 1")
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, qformer_hidden_size) * 0.02)
        # BLIP-2's query-only QFormer is BERT with cross-attention (to the LLM states) every
        # `cross_attention_frequency`-th layer, exactly SmartEdit's layout; load_bert_into_qformer fills it.
        self.qformer = Blip2QFormerModel(Blip2QFormerConfig(
            hidden_size=qformer_hidden_size, num_hidden_layers=qformer_layers,
            num_attention_heads=qformer_heads, intermediate_size=qformer_intermediate_size,
            encoder_hidden_size=d_llm, cross_attention_frequency=cross_attention_frequency))
        self.qformer_out = nn.Linear(qformer_hidden_size, cross_attention_dim)  # f: (B, 77, D)
        self.text_to_bim = nn.Linear(cross_attention_dim, bim_dim)
        self.image_to_bim = nn.Linear(vision_dim, bim_dim)
        self.bim = TwoWayTransformer(bim_depth, bim_dim, bim_heads, bim_mlp_dim)
        self.register_buffer("image_pe", _sincos_2d(vision_grid, bim_dim)[None], persistent=False)
        self.token_pe = nn.Parameter(torch.zeros(1, num_queries, bim_dim))
        # Zero-init outputs (SmartEdit supp.): at step 0 the module adds nothing, so training starts from
        # the plain QFormer condition and an unchanged UNet.
        self.text_out = nn.Linear(bim_dim, cross_attention_dim)
        self.image_out = nn.Conv2d(bim_dim, conv_in_channels, kernel_size=1)
        for layer in (self.text_out, self.image_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, llm_token_states: torch.Tensor, image_features: torch.Tensor) -> SiblingCondition:
        """llm_token_states: (B, num_llm_tokens, d_llm); image_features: (B, vision_grid², vision_dim)."""
        c = self.config
        _check(llm_token_states, (c.num_llm_tokens, c.d_llm), "llm_token_states")
        _check(image_features, (c.vision_grid ** 2, c.vision_dim), "image_features")
        b = llm_token_states.shape[0]
        f = self.qformer_states(llm_token_states)  # (B, 77, D)
        tokens, image = self.bim(self.text_to_bim(f), self.image_to_bim(image_features),
                                 self.token_pe.expand(b, -1, -1), self.image_pe.expand(b, -1, -1))
        states = f + c.interaction_scale * self.text_out(tokens)  # (B, 77, D)
        grid = image.transpose(1, 2).reshape(b, -1, c.vision_grid, c.vision_grid)  # (B, bim_dim, 16, 16)
        grid = nn.functional.interpolate(grid, size=(c.latent_grid, c.latent_grid), mode="bilinear",
                                         align_corners=False)  # (B, bim_dim, 32, 32)
        return SiblingCondition(states=states, conv_in_residual=self.image_out(grid))  # (B, 320, 32, 32)

    def qformer_states(self, llm_token_states: torch.Tensor) -> torch.Tensor:
        """f alone (B, 77, D): what stage 1 aligns with the CLIP text encoder."""
        b = llm_token_states.shape[0]
        q = self.qformer(query_embeds=self.query_tokens.expand(b, -1, -1),
                         encoder_hidden_states=llm_token_states).last_hidden_state
        return self.qformer_out(q)


def bert_to_qformer_state(bert_state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Map a BertModel state dict onto Blip2QFormerModel key names (BLIP-2's initialisation).

    Self-attention and the feed-forward of each layer come from BERT (the query path's FFN copies BERT's
    FFN, as BLIP-2 initialises it); cross-attention has no BERT counterpart and keeps its random init.
    Word/position embeddings are unused: the QFormer only reads the learned queries.
    """
    prefix = "bert." if any(k.startswith("bert.") for k in bert_state) else ""
    out = {}
    for key in ("weight", "bias"):
        src = f"{prefix}embeddings.LayerNorm.{key}"
        if src in bert_state:
            out[f"layernorm.{key}"] = bert_state[src]
    for i in range(num_layers):
        src = f"{prefix}encoder.layer.{i}."
        dst = f"encoder.layer.{i}."
        mapping = {
            "attention.self.query": "attention.attention.query",
            "attention.self.key": "attention.attention.key",
            "attention.self.value": "attention.attention.value",
            "attention.output.dense": "attention.output.dense",
            "attention.output.LayerNorm": "attention.output.LayerNorm",
            "intermediate.dense": "intermediate_query.dense",
            "output.dense": "output_query.dense",
            "output.LayerNorm": "output_query.LayerNorm",
        }
        for s, d in mapping.items():
            for key in ("weight", "bias"):
                name = f"{src}{s}.{key}"
                if name not in bert_state:
                    raise ModelLoadError(f"the BERT weights have no {name}: not a BERT-base layout with "
                                         f">= {num_layers} layers")
                out[f"{dst}{d}.{key}"] = bert_state[name]
    return out


def load_bert_into_qformer(connector: SmartEditConnector, bert_dir: str) -> int:
    """Initialise the connector's QFormer from a local BERT directory in HF layout (config.json +
    model.safetensors); returns how many tensors were copied. Shapes must match the QFormer's config."""
    import json

    from safetensors.torch import load_file

    config_path = os.path.join(bert_dir, "config.json")
    weights = os.path.join(bert_dir, "model.safetensors")
    if not os.path.isfile(config_path) or not os.path.isfile(weights):
        raise ModelLoadError(f"{bert_dir} needs config.json and model.safetensors (a BERT-base download in HF layout)")
    with open(config_path) as fh:
        model_type = json.load(fh).get("model_type")
    if model_type != "bert":
        raise ModelLoadError(f"{bert_dir} holds a {model_type!r} model, not BERT")
    mapped = bert_to_qformer_state(load_file(weights), connector.config.qformer_layers)
    own = connector.qformer.state_dict()
    for name, tensor in mapped.items():
        if own[name].shape != tensor.shape:
            raise ModelLoadError(f"BERT tensor for {name} has shape {tuple(tensor.shape)}, the QFormer needs "
                                 f"{tuple(own[name].shape)}: set qformer_hidden_size/intermediate_size to BERT's")
    connector.qformer.load_state_dict(mapped, strict=False)
    return len(mapped)


@contextlib.contextmanager
def conv_in_residual(unet, residual: torch.Tensor | None):
    """Add ``residual`` (B, C, h, w) to ``unet.conv_in``'s output while the block runs (SmartEdit's v').

    A scoped forward hook rather than a UNet subclass, so any diffusers UNet2DConditionModel (and its
    saved layout) is used unchanged; with ``residual`` None nothing is hooked.
    """
    if residual is None:
        yield unet
        return

    def add(_module, _inputs, output):
        if output.shape != residual.shape:
            raise ValueError(f"conv_in residual {tuple(residual.shape)} does not match conv_in output "
                             f"{tuple(output.shape)}: set conv_in_channels/latent_grid to the UNet's")
        return output + residual.to(output.dtype)

    handle = unet.conv_in.register_forward_hook(add)
    try:
        yield unet
    finally:
        handle.remove()


# ----------------------------------------------------------------------------------- MGIE


class MgieConnector(ModelMixin, ConfigMixin):
    """MGIE's edit head: 8 [IMG] hidden states -> 77 x D text condition."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, d_llm: int = 4096, num_llm_tokens: int = 8, num_queries: int = 77, hidden_size: int = 512,
                 encoder_layers: int = 4, decoder_layers: int = 4, heads: int = 8, feedforward: int = 2048,
                 cross_attention_dim: int = 768):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by heads ({heads})")
        self.llm_to_hidden = nn.Linear(d_llm, hidden_size)
        self.queries = nn.Parameter(torch.randn(1, num_queries, hidden_size) / math.sqrt(hidden_size))
        with warnings.catch_warnings():
            # nested tensors only serve post-norm encoders; nn.Transformer offers no switch and warns per build
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.transformer = nn.Transformer(d_model=hidden_size, nhead=heads, num_encoder_layers=encoder_layers,
                                              num_decoder_layers=decoder_layers, dim_feedforward=feedforward,
                                              dropout=0.0, batch_first=True, norm_first=True)
        self.hidden_to_condition = nn.Linear(hidden_size, cross_attention_dim)

    def forward(self, llm_token_states: torch.Tensor) -> SiblingCondition:
        """llm_token_states: (B, num_llm_tokens, d_llm) -> states (B, 77, D)."""
        c = self.config
        _check(llm_token_states, (c.num_llm_tokens, c.d_llm), "llm_token_states")
        memory = self.llm_to_hidden(llm_token_states)  # (B, 8, 512)
        hidden = self.transformer(memory, self.queries.expand(memory.shape[0], -1, -1))  # (B, 77, 512)
        return SiblingCondition(states=self.hidden_to_condition(hidden))  # (B, 77, D)


# ----------------------------------------------------------------------------------- ReasonPix2Pix


class Rp2pConnector(ModelMixin, ConfigMixin):
    """ReasonPix2Pix: the frozen LLaVA's output features h (papers/003 Eq. 8) -> the UNet's condition.

    The paper names no projection; LLaVA's hidden states (4096-d, large norms) must reach the UNet's
    768-d cross-attention, so h is LayerNorm'd then linearly projected. h is the last ``num_tokens``
    states of image + instruction (padded on the left, masked), so the instruction always survives.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, d_llm: int = 4096, num_tokens: int = 77, cross_attention_dim: int = 768):
        super().__init__()
        self.norm = nn.LayerNorm(d_llm)
        self.proj = nn.Linear(d_llm, cross_attention_dim)

    def forward(self, llm_states: torch.Tensor, llm_mask: torch.Tensor | None = None) -> SiblingCondition:
        c = self.config
        _check(llm_states, (c.num_tokens, c.d_llm), "llm_states")
        mask = None
        if llm_mask is not None:
            if tuple(llm_mask.shape) != tuple(llm_states.shape[:2]):
                raise ValueError(f"llm_mask must be {tuple(llm_states.shape[:2])}, got {tuple(llm_mask.shape)}")
            mask = llm_mask.to(llm_states.dtype)
        return SiblingCondition(states=self.proj(self.norm(llm_states)), mask=mask)


CONNECTORS = {"smartedit": SmartEditConnector, "mgie": MgieConnector, "rp2p": Rp2pConnector}


def connector_class(system: str):
    if system not in CONNECTORS:
        raise ValueError(f"system must be one of {SYSTEMS}, got {system!r}")
    return CONNECTORS[system]
