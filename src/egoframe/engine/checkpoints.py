"""One checkpoint layout for every trainer.

A checkpoint is a directory: one safetensors file per holder of tensors (``model``, ``ema``, ``trainable``,
``llm``, ``generator`` ...), ``optimizer.safetensors`` and ``rng.safetensors``, and ``state.json`` (the step, the
optimizer's and learning-rate scheduler's JSON-able state, the RNG's, and whatever the trainer adds, e.g. its
epoch and position). It is written under a temporary name and renamed, so a kill at any moment leaves either
the previous complete checkpoint or the new one; ``*.tmp-*`` directories are never read. Never pickle.

Two layouts: ``Checkpoints(root)`` keeps ``root/step-00001200`` directories (the last ``keep``);
``Checkpoints(root, single=True)`` keeps one checkpoint at ``root`` itself, for trainers that only resume.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from egoframe.errors import ConfigError
from egoframe.utils.checkpoint import (
    atomic_write_json,
    load_tensors,
    optimizer_from_files,
    optimizer_to_files,
    rng_from_files,
    rng_to_files,
    save_tensors,
)

STATE_FILE = "state.json"
STEP_PREFIX = "step-"


class Tensors(Protocol):
    """Something whose state is a flat dict of tensors (an :class:`~egoframe.engine.Ema` is one)."""

    def state_tensors(self) -> dict: ...

    def load_tensors(self, tensors: dict) -> None: ...


class ModuleState:
    """A module's whole ``state_dict``."""

    def __init__(self, module):
        self.module = module

    def state_tensors(self) -> dict:
        return {k: v.contiguous() for k, v in self.module.state_dict().items()}

    def load_tensors(self, tensors: dict) -> None:
        self.module.load_state_dict(tensors)


class TrainableState:
    """Only the parameters that train (``requires_grad``): LoRA weights, added-token rows, a projector. A frozen
    multi-GB LLM is not written again at every checkpoint."""

    def __init__(self, module):
        self.module = module

    def state_tensors(self) -> dict:
        return {n: p.detach() for n, p in self.module.named_parameters() if p.requires_grad}

    def load_tensors(self, tensors: dict) -> None:
        import torch

        params = dict(self.module.named_parameters())
        wanted = {n for n, p in params.items() if p.requires_grad}
        if set(tensors) != wanted:
            odd = sorted(wanted ^ set(tensors))
            raise ValueError(f"the trainable parameters differ (e.g. {odd[0]})")
        with torch.no_grad():
            for name, value in tensors.items():
                params[name].copy_(value)


class GeneratorState:
    """A ``torch.Generator`` that draws a trainer's batches."""

    def __init__(self, generator):
        self.generator = generator

    def state_tensors(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_tensors(self, tensors: dict) -> None:
        self.generator.set_state(tensors["state"])


@dataclass
class TrainState:
    """What one trainer's checkpoint holds: named tensor holders (one file each), the optimizer, the learning-rate
    scheduler (anything with a JSON-able ``state_dict``), and the global RNGs (torch, CUDA, numpy, random)."""

    tensors: dict[str, Tensors] = field(default_factory=dict)
    optimizer: Any = None
    scheduler: Any = None
    rng: bool = True


class Checkpoints:
    """The checkpoints of one training run."""

    def __init__(self, root: str, keep: int = 2, single: bool = False):
        if keep < 1:
            raise ConfigError(f"keep_checkpoints must be >= 1, got {keep}")
        self.root, self.keep, self.single = root, keep, single

    def _complete(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(d for d in os.listdir(self.root) if d.startswith(STEP_PREFIX) and ".tmp" not in d
                      and os.path.isfile(os.path.join(self.root, d, STATE_FILE)))

    def latest(self) -> str | None:
        """The newest complete checkpoint, or None."""
        if self.single:
            return self.root if os.path.isfile(os.path.join(self.root, STATE_FILE)) else None
        done = self._complete()
        return os.path.join(self.root, done[-1]) if done else None

    def save(self, step: int, state: TrainState, **extra: Any) -> str:
        """Write everything a resume needs; returns the checkpoint's directory."""
        if self.single:
            final = self.root
            os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        else:
            os.makedirs(self.root, exist_ok=True)
            final = os.path.join(self.root, f"{STEP_PREFIX}{step:08d}")
        tmp = f"{final}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        record: dict[str, Any] = {"step": int(step), **extra}
        for name, holder in state.tensors.items():
            save_tensors(holder.state_tensors(), os.path.join(tmp, f"{name}.safetensors"))
        if state.optimizer is not None:
            tensors, record["optimizer"] = optimizer_to_files(state.optimizer)
            save_tensors(tensors, os.path.join(tmp, "optimizer.safetensors"))
        if state.scheduler is not None:
            record["lr_scheduler"] = state.scheduler.state_dict()
        if state.rng:
            tensors, record["rng"] = rng_to_files()
            save_tensors(tensors, os.path.join(tmp, "rng.safetensors"))
        atomic_write_json(os.path.join(tmp, STATE_FILE), record)
        if os.path.exists(final):  # the window between these two lines loses at most this one checkpoint
            shutil.rmtree(final)
        os.replace(tmp, final)
        if not self.single:
            for old in self._complete()[:-self.keep]:
                shutil.rmtree(os.path.join(self.root, old), ignore_errors=True)
        return final

    @staticmethod
    def record(path: str) -> dict[str, Any]:
        """The checkpoint's ``state.json``: ``step`` and what the trainer added (e.g. its config, to check a
        resume against before loading anything)."""
        with open(os.path.join(path, STATE_FILE)) as fh:
            return json.load(fh)

    def load(self, path: str, state: TrainState) -> dict[str, Any]:
        """Restore ``state`` from the checkpoint at ``path``; returns its ``state.json`` (``step`` and extras)."""
        record = self.record(path)
        try:
            for name, holder in state.tensors.items():
                holder.load_tensors(load_tensors(os.path.join(path, f"{name}.safetensors")))
            if state.optimizer is not None:
                state.optimizer.load_state_dict(optimizer_from_files(
                    load_tensors(os.path.join(path, "optimizer.safetensors")), record["optimizer"]))
        except (RuntimeError, ValueError, KeyError, FileNotFoundError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot resume {path}: it does not fit this model ({reason})") from None
        if state.scheduler is not None:
            # "schedule": the oracle's checkpoints before the shared engine (2026-12-08) named it so
            state.scheduler.load_state_dict(record.get("lr_scheduler", record.get("schedule")))
        if state.rng and os.path.exists(os.path.join(path, "rng.safetensors")):
            rng_from_files(load_tensors(os.path.join(path, "rng.safetensors")), record.get("rng"))
        return record

    def clear(self) -> None:
        """Remove every checkpoint (after the trained model has been exported)."""
        shutil.rmtree(self.root, ignore_errors=True)


def check_resumable(saved: dict[str, Any], now: dict[str, Any], where: str, *, free: Iterable[str] = (),
                    only: Iterable[str] | None = None) -> None:
    """Refuse to resume a run whose settings changed: ``saved`` and ``now`` are JSON-able config dicts; keys in
    ``free`` may change (e.g. the number of steps); with ``only``, just those keys are compared."""
    saved, now = json.loads(json.dumps(saved, default=str)), json.loads(json.dumps(now, default=str))
    keys = set(only) if only is not None else (set(saved) | set(now)) - set(free)
    changed = sorted(k for k in keys if saved.get(k) != now.get(k))
    if changed:
        raise ConfigError(f"cannot resume {where}: {', '.join(changed)} changed since the run started; "
                          "use the same settings or another output directory")
