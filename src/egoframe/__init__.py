"""egoframe: instruction-guided egocentric frame generation with multimodal LLMs.

Heavy modules (torch, diffusers, transformers) load lazily, so ``import egoframe`` and the CLI's
``--help`` stay fast. Model classes are exported at the top level because diffusers' pipeline loader
finds a custom component class as ``getattr(importlib.import_module("egoframe"), class_name)``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LegoConditioning": "egoframe.models.conditioning",
    "LegoConditioningConfig": "egoframe.models.conditioning",
    "LegoPipeline": "egoframe.pipelines.lego",
    "LegoPipelineOutput": "egoframe.pipelines.lego",
    "grow_conv_in": "egoframe.models.unet",
    "EgoframeError": "egoframe.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'egoframe' has no attribute {name!r}")
