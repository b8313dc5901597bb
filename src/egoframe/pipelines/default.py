"""The embedded default model: what `egoframe generate` uses when no --model is given."""

from __future__ import annotations

import logging
import os
from importlib import resources

from egoframe.pipelines.loading import load_pipeline

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = (
    "no trained embedded model is installed: using a tiny model with RANDOM weights "
    "(outputs are noise; train one with `egoframe quickstart` or pass --model DIR)"
)


def default_model_dir() -> str | None:
    """The shipped trained model directory, if this installation has one."""
    path = resources.files("egoframe") / "assets" / "default-model"
    path = os.fspath(path)
    return path if os.path.exists(os.path.join(path, "model_index.json")) else None


def load_default_pipeline(notes: list[str] | None = None):
    """The shipped trained model, or a tiny random-weight one (with a loud note saying so)."""
    from egoframe.pipelines.lego import tiny_pipeline  # lazy: pulls diffusers

    path = default_model_dir()
    if path is not None:
        return load_pipeline(path)
    logger.warning(RANDOM_WEIGHTS_WARNING)
    if notes is not None:
        notes.append(RANDOM_WEIGHTS_WARNING)
    # Without a trained VLLM there are no VLLM embeddings to give, so the random stand-in is the
    # description-conditioned variant.
    return tiny_pipeline(ablation="descriptions")
