"""LEGO's conditioning sequence C = [ψ(R); σ(H_i); π(μ(H_t))] (LEGO, papers/001 Sec. 3.2).

ψ(R): the frozen CLIP text encoder's last hidden states of the enriched description R (or of the bare
      action label for the "labels" ablation and the IP2P baseline); computed by the pipeline, passed in.
σ:    Linear(d_llm -> D) on the VLLM image tokens H_i (projected CLIP patch tokens, 256 for LLaVA-1.5).
μ, π: Linear(d_llm -> D) then a small pre-norm Transformer encoder on the VLLM text tokens H_t
      (last-layer hidden states of the generated answer, padded to N = 77).
D is the UNet's cross-attention width (768 for SD 1.5), so C is (77 + 256 + 77) x 768 = 410 x 768.

Each VLLM branch is optional, so the ablations of the paper's Table 3 (labels, descriptions,
+image emb., +text emb., +joint emb.) are configurations of this one module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from egoframe.models.ablations import ABLATIONS  # noqa: F401  (re-exported: the module's configurations)

TEXT_SOURCES = ("description", "label")
# Where the null VLLM condition is made (classifier-free dropout, the unconditional branches at sampling):
# "outputs": the VLLM blocks of C are zeros, σ(H_i) and π(μ(H_t)) multiplied by 0 after projection, as LEGO's
#            public code does (ddpm_egogen.py get_input: img = (1 - mask)·projection_img(H_i), the same for
#            the text after self_attn_mix): what a converted LEGO checkpoint needs;
# "inputs":  H_i and H_t are zeroed before σ/μ, so the null blocks are the learned response to zero input
#            (σ(0) = its bias): egoframe's own models are trained this way (the default, kept for them).
NULL_VLLM_MODES = ("inputs", "outputs")


@dataclass
class LegoConditioningConfig:
    """Typed view of :class:`LegoConditioning`'s config (the defaults are LEGO with SD 1.5 + LLaVA-1.5-13B)."""

    cross_attention_dim: int = 768
    d_llm: int = 5120  # LLaVA-1.5-13B, the model of the public code; 4096 for 7B
    num_text_encoder_tokens: int = 77
    num_image_tokens: int = 256
    num_text_tokens: int = 77
    use_image_tokens: bool = True
    use_text_tokens: bool = True
    text_source: str = "description"
    text_transformer_layers: int = 2
    text_transformer_heads: int = 8
    use_text_mask: bool = True  # the public code keeps no padding mask (False reproduces it)
    null_vllm: str = "inputs"  # NULL_VLLM_MODES; "outputs" reproduces the public code
    # π's feed-forward width and activation. None / "gelu": 4 x D, GELU (egoframe's); the public code's
    # self_attn_mix uses torch's TransformerEncoderLayer defaults, 2048 and ReLU (a converted checkpoint's).
    text_transformer_ff: int | None = None
    text_transformer_activation: str = "gelu"

    def to_kwargs(self) -> dict:
        return asdict(self)


class LegoConditioning(ModelMixin, ConfigMixin):
    """Builds the cross-attention sequence from ψ(R) and the VLLM embeddings.

    When the VLLM condition is dropped (classifier-free dropout in training, the unconditional branches
    at sampling) the sequence keeps its length and the UNet sees the same layout in every branch; what fills
    the VLLM blocks is ``null_vllm`` (:data:`NULL_VLLM_MODES`): zeros after projection, as the public LEGO
    code does (``"outputs"``, for converted checkpoints), or the response of σ/μ/π to zeroed inputs
    (``"inputs"``, egoframe's default, which its own models are trained with).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        cross_attention_dim: int = 768,
        d_llm: int = 5120,
        num_text_encoder_tokens: int = 77,
        num_image_tokens: int = 256,
        num_text_tokens: int = 77,
        use_image_tokens: bool = True,
        use_text_tokens: bool = True,
        text_source: str = "description",
        text_transformer_layers: int = 2,
        text_transformer_heads: int = 8,
        use_text_mask: bool = True,
        null_vllm: str = "inputs",
        text_transformer_ff: int | None = None,
        text_transformer_activation: str = "gelu",
    ):
        super().__init__()
        if null_vllm not in NULL_VLLM_MODES:
            raise ValueError(f"null_vllm must be one of {NULL_VLLM_MODES}, got {null_vllm!r}")
        if text_source not in TEXT_SOURCES:
            raise ValueError(f"text_source must be one of {TEXT_SOURCES}, got {text_source!r}")
        if cross_attention_dim % text_transformer_heads:
            raise ValueError(
                f"cross_attention_dim ({cross_attention_dim}) must be divisible by "
                f"text_transformer_heads ({text_transformer_heads})"
            )
        self.image_proj = nn.Linear(d_llm, cross_attention_dim) if use_image_tokens else None  # σ
        if use_text_tokens:
            self.text_proj = nn.Linear(d_llm, cross_attention_dim)  # μ
            layer = nn.TransformerEncoderLayer(
                d_model=cross_attention_dim,
                nhead=text_transformer_heads,
                dim_feedforward=text_transformer_ff or 4 * cross_attention_dim,
                dropout=0.0,
                activation=text_transformer_activation,
                batch_first=True,
                norm_first=True,  # pre-norm, as REFERENCE.md
            )
            # enable_nested_tensor only applies to post-norm layers; off avoids a warning per build.
            self.text_transformer = nn.TransformerEncoder(
                layer, num_layers=text_transformer_layers, enable_nested_tensor=False
            )  # π
        else:
            self.text_proj = None
            self.text_transformer = None
        # The "labels"/"descriptions" variants have no parameters at all; this empty buffer lets
        # `device`/`dtype` (and diffusers' pipeline .to()) work for them too. It is saved so that every
        # variant writes a safetensors file: with none, diffusers would fall back to pickle loading.
        self.register_buffer("_anchor", torch.zeros(0), persistent=True)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        params = list(self.parameters())
        return params[0].dtype if params else self._anchor.dtype

    @classmethod
    def from_typed_config(cls, config: LegoConditioningConfig) -> "LegoConditioning":
        return cls(**config.to_kwargs())

    @property
    def needs_vllm(self) -> bool:
        return bool(self.config.use_image_tokens or self.config.use_text_tokens)

    @property
    def sequence_length(self) -> int:
        c = self.config
        return (
            c.num_text_encoder_tokens
            + (c.num_image_tokens if c.use_image_tokens else 0)
            + (c.num_text_tokens if c.use_text_tokens else 0)
        )

    def forward(
        self,
        text_encoder_states: torch.Tensor,
        vllm_image_tokens: torch.Tensor | None = None,
        vllm_text_tokens: torch.Tensor | None = None,
        vllm_text_mask: torch.Tensor | None = None,
        drop_vllm: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the condition C (B, L, D) and its attention mask (B, L) (None when masks are off).

        text_encoder_states: ψ(R), (B, 77, D).
        vllm_image_tokens:   H_i, (B, num_image_tokens, d_llm); needed when use_image_tokens.
        vllm_text_tokens:    H_t, (B, num_text_tokens, d_llm); needed when use_text_tokens.
        vllm_text_mask:      (B, num_text_tokens), 1 for real answer tokens; all ones when omitted.
        drop_vllm:           (B,) bool; rows whose VLLM tokens are zeroed (the null condition).
        """
        c = self.config
        batch = text_encoder_states.shape[0]
        self._check(text_encoder_states, (c.num_text_encoder_tokens, c.cross_attention_dim), "text_encoder_states")
        parts = [text_encoder_states]  # (B, 77, D)
        masks = [text_encoder_states.new_ones(batch, c.num_text_encoder_tokens)]
        keep = None
        if drop_vllm is not None:
            keep = (~drop_vllm.bool()).to(text_encoder_states.dtype).view(batch, 1, 1)
        after = getattr(c, "null_vllm", "inputs") == "outputs"  # configs saved before the switch: "inputs"

        if c.use_image_tokens:
            if vllm_image_tokens is None:
                raise ValueError("vllm_image_tokens are required: this model conditions on VLLM image tokens")
            self._check(vllm_image_tokens, (c.num_image_tokens, c.d_llm), "vllm_image_tokens")
            h_i = vllm_image_tokens.to(text_encoder_states.dtype)
            if keep is not None and not after:
                h_i = h_i * keep
            image_block = self.image_proj(h_i)  # (B, 256, D)
            if keep is not None and after:
                image_block = image_block * keep
            parts.append(image_block)
            masks.append(text_encoder_states.new_ones(batch, c.num_image_tokens))

        if c.use_text_tokens:
            if vllm_text_tokens is None:
                raise ValueError("vllm_text_tokens are required: this model conditions on VLLM text tokens")
            self._check(vllm_text_tokens, (c.num_text_tokens, c.d_llm), "vllm_text_tokens")
            h_t = vllm_text_tokens.to(text_encoder_states.dtype)
            if vllm_text_mask is None:
                mask = text_encoder_states.new_ones(batch, c.num_text_tokens)
            else:
                if vllm_text_mask.shape != (batch, c.num_text_tokens):
                    raise ValueError(
                        f"vllm_text_mask must be {(batch, c.num_text_tokens)}, got {tuple(vllm_text_mask.shape)}"
                    )
                mask = vllm_text_mask.to(text_encoder_states.dtype).clone()
                # An empty answer would mask every key and make attention NaN: keep one slot.
                mask[mask.sum(dim=1) == 0, 0] = 1
            if keep is not None:
                if not after:
                    h_t = h_t * keep
                # Dropped rows are the null condition: all-zero tokens, all visible (public-code layout).
                mask = torch.where(keep.view(batch, 1) > 0, mask, torch.ones_like(mask))
            tokens = self.text_proj(h_t)  # (B, 77, D)
            padding = (mask == 0) if c.use_text_mask else None
            tokens = self.text_transformer(tokens, src_key_padding_mask=padding)  # (B, 77, D)
            if keep is not None and after:
                tokens = tokens * keep
            parts.append(tokens)
            masks.append(mask if c.use_text_mask else torch.ones_like(mask))

        condition = torch.cat(parts, dim=1)  # (B, L, D)
        attention_mask = torch.cat(masks, dim=1) if (c.use_text_mask and c.use_text_tokens) else None
        return condition, attention_mask

    @staticmethod
    def _check(tensor: torch.Tensor, tail: tuple[int, int], name: str) -> None:
        if tensor.dim() != 3 or tuple(tensor.shape[1:]) != tail:
            raise ValueError(f"{name} must have shape (B, {tail[0]}, {tail[1]}), got {tuple(tensor.shape)}")
