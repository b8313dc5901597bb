"""Crash-safe checkpoint files: safetensors for tensors, JSON for the rest, never pickle.

Every file is written to a temporary name, fsync'd and renamed, so a process killed at any moment
leaves either the old complete file or the new complete one.
"""

from __future__ import annotations

import json
import os
from typing import Any


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def save_tensors(tensors: dict, path: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors file written atomically; tensors are moved to CPU and made contiguous."""
    from safetensors.torch import save_file

    tmp = f"{path}.tmp-{os.getpid()}"
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_tensors(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def optimizer_to_files(optimizer) -> tuple[dict, dict[str, Any]]:
    """Optimizer state as (tensors for safetensors, JSON-able rest)."""
    import torch

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict, rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_files`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(rest["scalars"].items()):
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_to_files() -> tuple[dict, dict[str, Any]]:
    """The global RNG states (torch CPU and CUDA, numpy, random) as tensors + JSON."""
    import random

    import numpy as np
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    tensors = {"torch_cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = cuda_state
    rest = {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, rest


def rng_from_files(tensors: dict, rest: dict[str, Any] | None) -> None:
    """Inverse of :func:`rng_to_files`; ``rest`` None restores the torch states only."""
    import random

    import numpy as np
    import torch

    torch.random.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if rest is None:
        return
    n = rest["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = rest["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def truncate_jsonl_log(path: str, last_step: int) -> None:
    """Drop the lines of a JSON-lines log (one ``{"step": ...}`` object a line) written after step ``last_step``:
    a run resuming from that checkpoint recomputes them. A line cut by a kill ends the kept part; a line without a
    step (a note written before the steps) is kept."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path) as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill
            if row.get("step", last_step) > last_step:
                break
            keep.append(line if line.endswith("\n") else line + "\n")
    atomic_write_text(path, "".join(keep))
