"""Checking a user's torch device string before any model is loaded."""

from __future__ import annotations

from egoframe.errors import InputError


def check_device(device: str) -> None:
    """Refuse a device torch cannot parse (``quantum:9``) or this torch build and machine cannot run
    (``cuda`` on a CPU-only build, ``cuda:3`` on a one-GPU machine), with a one-line :class:`InputError`."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return
    backend = torch.backends.mps if parsed.type == "mps" else getattr(torch, parsed.type, None)
    is_available = getattr(backend, "is_available", None)
    if is_available is None:  # meta, opengl, ...: torch knows the name but cannot sample on it
        raise InputError(f"device {device!r}: cannot generate on {parsed.type!r} devices; use cpu, cuda or mps")
    if not is_available():
        if parsed.type == "cuda" and torch.version.cuda is None and torch.version.hip is None:
            why = f"this torch build ({torch.__version__}) has no CUDA support"
        else:
            why = f"no {parsed.type} device is visible on this machine"
        raise InputError(f"device {device!r} is not available: {why}; use cpu instead")
    count = getattr(backend, "device_count", None)
    if parsed.index is not None and count is not None and parsed.index >= count():
        raise InputError(f"device {device!r} does not exist: {count()} {parsed.type} device(s) are visible "
                         f"(numbered from 0)")
