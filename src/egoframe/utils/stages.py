"""Named, timed, resumable stages of a multi-step job (`egoframe quickstart`, `egoframe recipe`).

Each stage function returns :data:`DONE_BEFORE` when an earlier run already finished it, so that run's time
is kept; the seconds per stage are written to ``timings.json`` after every stage, so a killed job loses
nothing of its record and a rerun continues it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from egoframe.utils.checkpoint import atomic_write_json

DONE_BEFORE = "done before"


class Stages:
    def __init__(self, out_dir: str, say: Callable[[str], Any] = print, timings: dict | None = None):
        self._write = atomic_write_json
        self.say = say
        self.file = os.path.join(out_dir, "timings.json")
        self.timings: dict[str, float] = dict(timings or {})
        if os.path.exists(self.file):
            with open(self.file) as fh:
                self.timings.update(json.load(fh))

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.time()
        self.say(f"[{name}] ...")
        result = fn()
        if not (isinstance(result, str) and result == DONE_BEFORE):
            self.timings[name] = round(time.time() - start, 1)
        self._write(self.file, self.timings)
        self.say(f"[{name}] {self.timings.get(name, 0.0):.0f} s")
        return result

    @property
    def total(self) -> float:
        return round(sum(self.timings.values()), 1)
