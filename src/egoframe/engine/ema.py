"""Exponential moving average of trained weights (LEGO trains with EMA 0.9999)."""

from __future__ import annotations

import contextlib

import torch


class Ema:
    """Shadow copies of a module's trainable parameters.

    The decay warms up as min(decay, (1 + step) / (10 + step)) (the schedule of diffusers' EMAModel
    without power warm-up), so short CPU runs are not dominated by the random initialisation.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone().float() for n, p in module.named_parameters() if p.requires_grad}

    def current_decay(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = self.current_decay(step)
        for name, param in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(d).add_(param.detach().float(), alpha=1 - d)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(tensors)
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[0]}")
        for name in self.shadow:
            self.shadow[name] = tensors[name].float().clone()

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        for name, param in module.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name].to(param.dtype))

    @contextlib.contextmanager
    def swapped_in(self, module: torch.nn.Module):
        """Temporarily run ``module`` with the EMA weights (for sample grids)."""
        backup = {n: p.detach().clone() for n, p in module.named_parameters() if n in self.shadow}
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for name, param in module.named_parameters():
                    if name in backup:
                        param.copy_(backup[name])
