"""The step loop every trainer shares, and the loss log a resume truncates.

A trainer hands :func:`run_steps` one function, ``step_fn(step) -> loss`` (forward, backward, optimizer step on
batch ``step``); the loop does the rest the same way for all: a non-finite loss stops the run with an error that
says what to change, each loss goes to the JSON-lines log, the progress bar moves, and a checkpoint is written
every ``every`` steps (and at the end when asked).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable

from egoframe.errors import TrainingDivergedError
from egoframe.utils.checkpoint import truncate_jsonl_log
from egoframe.utils.progress import ProgressBar


class LossLog:
    """``losses.jsonl``: one ``{"step": N, "loss": ..., ...}`` object a line."""

    def __init__(self, path: str | None):
        self.path = path  # None: a process that does not log (not the main one of a distributed run)

    def resume(self, step: int) -> None:
        """Drop the steps logged after the checkpoint a run resumes from (all of them, starting at step 0); lines
        without a step (e.g. a note of an earlier stage) stay."""
        if self.path:
            truncate_jsonl_log(self.path, step)

    def append(self, step: int, loss: float, **fields: Any) -> None:
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"step": int(step), "loss": loss, **fields}) + "\n")

    @staticmethod
    def read(path: str) -> list[dict[str, Any]]:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]


def run_steps(step_fn: Callable[[int], float | tuple[float, dict]], start: int, stop: int, *,
              bar: ProgressBar | None = None, log: LossLog | None = None, log_every: int = 1,
              checkpoint: Callable[[int], Any] | None = None, checkpoint_every: int = 0,
              checkpoint_at_end: bool = False, after_step: Callable[[int, float], None] | None = None,
              advice: str = "lower the learning rate") -> float:
    """Run steps ``start .. stop-1``; returns the last loss (NaN when no step ran).

    ``step_fn`` may return ``(loss, fields)``: the fields go to the log line and the progress bar. A step's number
    in the log, the bar and the checkpoint is the count of steps done (``step + 1``).
    """
    loss = float("nan")
    began = time.monotonic()
    for step in range(start, stop):
        out = step_fn(step)
        loss, fields = (out if isinstance(out, tuple) else (out, {}))
        loss = float(loss)
        done = step + 1
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"the loss became {loss} at step {done}: {advice}")
        if log is not None and (done % log_every == 0 or done == stop):
            log.append(done, loss, **fields)
        if bar is not None:
            shown = {k: v for k, v in fields.items() if k in bar.fields}
            if "it/s" in bar.fields:
                shown["it/s"] = f"{(done - start) / max(time.monotonic() - began, 1e-9):.2f}"
            bar.update(done, loss=f"{loss:.4f}", **shown)
        if after_step is not None:
            after_step(done, loss)
        if checkpoint is not None and checkpoint_every and (
                (done % checkpoint_every == 0 and done < stop) or (checkpoint_at_end and done == stop)):
            checkpoint(done)
    return loss
