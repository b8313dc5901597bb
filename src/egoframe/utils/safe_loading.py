"""Model weights are read from safetensors only; pickle checkpoints need an explicit opt-in.

A ``pytorch_model.bin`` / ``diffusion_pytorch_model.bin`` (or ``.pt``/``.pth``/``.ckpt``) is a pickle: loading
it trusts whoever wrote it, and torch's ``weights_only`` default is the only thing between a malicious file
and code execution. Every ``from_pretrained`` of weights in egoframe therefore passes
``use_safetensors=True`` (from :func:`weights_kwargs`), after :func:`check_weights` has refused, in one line
naming the file, a folder whose weights are pickle only. A user who trusts such a checkpoint opts in with
``EGOFRAME_ALLOW_PICKLE=1`` (or ``allow_pickle=True`` where a loader takes it); the libraries then fall back
to the ``.bin``, still through torch's ``weights_only`` loader.
"""

from __future__ import annotations

import json
import os

from egoframe.errors import ModelLoadError

ALLOW_PICKLE_ENV = "EGOFRAME_ALLOW_PICKLE"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_TRUE = ("1", "true", "yes", "on")


def pickle_allowed(allow_pickle: bool | None = None) -> bool:
    """``allow_pickle`` when given, else whether ``EGOFRAME_ALLOW_PICKLE`` is set to 1 (true, yes, on)."""
    if allow_pickle is not None:
        return bool(allow_pickle)
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in _TRUE


def pickle_only_file(folder: str | os.PathLike) -> str | None:
    """The first pickle weight file of ``folder`` when it holds no ``.safetensors`` weights, else None."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return None
    names = sorted(os.listdir(folder))
    if any(name.endswith((".safetensors", ".safetensors.index.json")) for name in names):
        return None
    pickles = [name for name in names if name.endswith(PICKLE_SUFFIXES) and os.path.isfile(os.path.join(folder, name))]
    return os.path.join(folder, pickles[0]) if pickles else None


def check_weights(*folders: str | os.PathLike, allow_pickle: bool | None = None) -> None:
    """Refuse the first folder whose weights are pickle only, with a one-line :class:`ModelLoadError`."""
    if pickle_allowed(allow_pickle):
        return
    for folder in folders:
        found = pickle_only_file(folder)
        if found is not None:
            raise ModelLoadError(
                f"{found} is a pickle checkpoint and no .safetensors weights are beside it: egoframe loads "
                f"safetensors only; re-save it as safetensors, or set {ALLOW_PICKLE_ENV}=1 if you trust this file")


def weights_kwargs(*folders: str | os.PathLike, allow_pickle: bool | None = None) -> dict:
    """Check ``folders`` (:func:`check_weights`), then the ``from_pretrained`` arguments that enforce it."""
    check_weights(*folders, allow_pickle=allow_pickle)
    # use_safetensors=None (the libraries' default): safetensors when present, else the pickle.
    return {"use_safetensors": None if pickle_allowed(allow_pickle) else True}


def pipeline_folders(path: str | os.PathLike, skip: tuple[str, ...] = ()) -> list[str]:
    """The component folders a diffusers ``model_index.json`` names (those present), less ``skip``."""
    path = os.fspath(path)
    try:
        with open(os.path.join(path, "model_index.json")) as fh:
            index = json.load(fh)
    except (OSError, ValueError):
        return []
    if not isinstance(index, dict):
        return []
    return [os.path.join(path, name) for name, value in index.items()
            if not name.startswith("_") and name not in skip and isinstance(value, list)
            and os.path.isdir(os.path.join(path, name))]
