"""The one stage runner of egoframe's multi-step jobs (quickstart, recipe, reproduce, siblings compare, eval-world).

A job is a sequence of named stages, each resumable on its own (a rerun reuses what a stage finished). The runner
times them: ``now`` holds the seconds of this invocation, ``timings`` the seconds each stage cost when it last did
its work, kept in a JSON file (``timings.json``) rewritten after every stage, so a killed job loses nothing of its
record and a rerun that reuses a stage still reports what it cost. A stage function says it reused everything by
returning :data:`DONE_BEFORE`; a job that knows it otherwise calls :meth:`Stages.record` itself.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from egoframe.utils.checkpoint import atomic_write_json

DONE_BEFORE = "done before"
TIMINGS_FILE = "timings.json"


class Stages:
    def __init__(self, out_dir: str, say: Callable[[str], Any] = print, timings: dict | None = None,
                 file: str = TIMINGS_FILE):
        self.say = say
        self.file = os.path.join(out_dir, file)
        self.timings: dict[str, float] = dict(timings or {})  # seconds when each stage last did its work
        self.now: dict[str, float] = {}  # seconds in this invocation
        if os.path.exists(self.file):
            with open(self.file) as fh:
                self.timings.update(json.load(fh))

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run stage ``name`` and record its time; returns what ``fn`` returns."""
        start = time.time()
        self.say(f"[{name}] ...")
        result = fn()
        self.record(name, time.time() - start, did_work=not (isinstance(result, str) and result == DONE_BEFORE))
        self.say(f"[{name}] {self.timings.get(name, self.now[name]):.0f} s")
        return result

    def record(self, name: str, seconds: float, did_work: bool = True) -> None:
        self.now[name] = round(seconds, 1)
        if did_work or name not in self.timings:
            self.timings[name] = round(seconds, 1)
        os.makedirs(os.path.dirname(self.file) or ".", exist_ok=True)
        atomic_write_json(self.file, self.timings)

    def rows(self) -> dict[str, tuple[float, float | None]]:
        """(seconds now, seconds when it last did its work) per stage run in this invocation."""
        return {k: (v, self.timings.get(k)) for k, v in self.now.items()}

    @property
    def total(self) -> float:
        return round(sum(self.timings.values()), 1)
