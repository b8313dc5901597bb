"""The training engine every egoframe trainer shares (diffusion, VAE, VLLM, oracle, siblings).

A trainer keeps only what is its own: how a batch becomes a loss. What every trainer needs lives here, once:

- :mod:`egoframe.engine.checkpoints`: one checkpoint layout (safetensors + ``state.json``, written to a temporary
  name and renamed), the newest-complete lookup, keep-last-N, and the "may this run resume?" check;
- :mod:`egoframe.engine.loop`: the step loop (divergence check, loss log that a resume truncates, progress bar,
  checkpoint schedule, per-step hooks);
- :mod:`egoframe.engine.ema`: the exponential moving average of the trained weights.
"""

from egoframe.engine.checkpoints import (
    Checkpoints,
    GeneratorState,
    ModuleState,
    TrainableState,
    TrainState,
    check_resumable,
)
from egoframe.engine.ema import Ema
from egoframe.engine.loop import LossLog, run_steps

__all__ = ["Checkpoints", "Ema", "GeneratorState", "LossLog", "ModuleState", "TrainState", "TrainableState",
           "check_resumable", "run_steps"]
