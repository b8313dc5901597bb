"""Safe loading of metric weights from local files: safetensors, or ``torch.load(weights_only=True)``.

No pickle is ever executed: a ``.pth`` that needs arbitrary classes is refused with a message naming them.
"""

from __future__ import annotations

import os
from pathlib import Path

from egoframe.errors import MissingWeightsError, ModelLoadError


def load_state_dict(path: str | os.PathLike, what: str) -> dict:
    """Tensors of a ``.safetensors`` file or a plain ``.pth``/``.pt``/``.bin`` state dict (weights_only)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what}: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelLoadError(f"{what}: {path} is not a valid safetensors file ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{what}: {path} cannot be loaded with torch.load(weights_only=True): "
                             f"{unsafe_reason(path, exc)}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{what}: {path} does not hold a state dict of tensors")
    return dict(state)


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def find_file(folder: str | os.PathLike | None, patterns: tuple[str, ...]) -> Path | None:
    """The first file in ``folder`` matching one of the glob ``patterns`` (tried in order)."""
    if folder is None:
        return None
    folder = Path(folder)
    if folder.is_file():
        return folder
    if not folder.is_dir():
        return None
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def strip_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def load_into(module, state: dict, what: str, path, ignore_prefixes: tuple[str, ...] = (),
              optional_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """``module.load_state_dict`` that names missing/unexpected/mis-shaped keys in one line."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in own if k not in state and not k.endswith(optional_suffixes)]
    unexpected = [k for k in state if k not in own and not k.endswith(optional_suffixes)]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"wrong shapes ({'; '.join(shapes[:2])})")
        raise ModelLoadError(f"{what}: {path} does not fit: {'; '.join(parts)}")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def unsafe_reason(path, exc: BaseException) -> str:
    """Why a weights_only load failed: the pickled classes it would need, else the error's first line."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        names = []
    if names:
        return f"it pickles non-tensor objects ({', '.join(names[:4])}); refusing to unpickle them"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
