"""One rich progress bar for long jobs, or nothing when disabled: ``with ProgressBar(...) as bar: bar.advance()``."""

from __future__ import annotations


class ProgressBar:
    """``label`` bar over ``total`` items starting at ``done``; ``advance()`` counts one item, ``update(n, **fields)``
    sets the count and the extra text fields (e.g. ``loss``) named in ``fields`` at construction."""

    def __init__(self, enabled: bool, label: str, total: int, done: int = 0, fields: dict | None = None):
        self.enabled, self.label, self.total, self.done = enabled, label, total, done
        self.fields = dict(fields or {})
        self._progress = self._task = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn(self.label), BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in self.fields]
            self._progress = Progress(*columns, TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.done, **self.fields)
        return self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def update(self, completed: int, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, **fields)

    def __exit__(self, *exc) -> bool:
        if self._progress is not None:
            self._progress.stop()
        return False


__all__ = ["ProgressBar"]
