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


# ------------------------------------------------------------------ tensors out of a foreign pickle checkpoint

# The only globals a checkpoint may name and get: containers and torch's tensor rebuilders. Anything else a
# pickle asks for (Lightning callbacks, OmegaConf hyper-parameters, optimiser classes, os.system) becomes an
# inert placeholder whose construction runs no code from the file.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "tuple"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "complex"), ("builtins", "slice"),
    ("builtins", "object"), ("copyreg", "_reconstructor"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"), ("torch", "device"),
}


class Inert:
    """What a foreign class or function in a checkpoint becomes: accepts any arguments and state, does nothing."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return Inert()


class _RestrictedPickle:
    """A ``pickle_module`` for torch.load whose unpickler resolves only :data:`_SAFE_GLOBALS`."""

    import pickle as _pickle

    __name__ = "egoframe_restricted_pickle"

    class Unpickler(_pickle.Unpickler):
        def find_class(self, module, name):
            import torch

            if (module, name) in _SAFE_GLOBALS:
                return super().find_class(module, name)
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
            return Inert

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedPickle.Unpickler(file, **kwargs).load()


def read_pickle_tensors(path: str | os.PathLike) -> dict:
    """The tensors of a pickle checkpoint (``.ckpt``, ``.pt``, ``.bin``) as a flat ``{key: tensor}`` dict,
    without running any code from the file: only containers and tensors are rebuilt (:data:`_SAFE_GLOBALS`),
    everything else becomes :class:`Inert`. A Lightning checkpoint's ``state_dict`` is returned; other
    top-level dicts are searched for tensors with dotted keys."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say which and why, in one line
        raise ModelLoadError(f"{path} is not a readable torch checkpoint: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    out = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    walk(f"{prefix}.{key}" if prefix else key, item)

    walk("", data)
    if not out:
        raise ModelLoadError(f"{path} holds no tensors")
    return out
