"""The ablations of LEGO's Table 3 (papers/001), plus the IP2P baseline: one home for their names.

Each is a configuration of the one conditioning module (:class:`egoframe.models.conditioning.LegoConditioning`):
which text the CLIP encoder reads (the action label or the enriched description) and which VLLM embeddings join
the cross-attention sequence. Light on purpose (no torch), so configs can name them.
"""

from __future__ import annotations

from typing import Literal

ABLATIONS: dict[str, dict] = {
    "ip2p": dict(text_source="label", use_image_tokens=False, use_text_tokens=False),
    "labels": dict(text_source="label", use_image_tokens=False, use_text_tokens=False),
    "descriptions": dict(text_source="description", use_image_tokens=False, use_text_tokens=False),
    "desc+text": dict(text_source="description", use_image_tokens=False, use_text_tokens=True),
    "desc+image": dict(text_source="description", use_image_tokens=True, use_text_tokens=False),
    "lego": dict(text_source="description", use_image_tokens=True, use_text_tokens=True),
}
AblationName = Literal[tuple(ABLATIONS)]  # type: ignore[valid-type]  # the names a config may give


def ablation_uses_vllm(name: str) -> bool:
    """Whether the ablation conditions on the VLLM's image or text embeddings (it then needs an embedding cache)."""
    return ABLATIONS[name]["use_image_tokens"] or ABLATIONS[name]["use_text_tokens"]


def ablation_uses_descriptions(name: str) -> bool:
    return ABLATIONS[name]["text_source"] == "description"
