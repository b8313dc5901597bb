"""egoframe's one progress bar (rich) for long jobs, or nothing when disabled.

``with ProgressBar(enabled, "label", total) as bar: bar.advance()``; or ``bar = ProgressBar(...).start()`` and
``bar.close()`` in a ``finally`` where a context manager does not fit the loop.
"""

from __future__ import annotations


class ProgressBar:
    """``label`` bar over ``total`` items starting at ``done``; ``advance()`` counts one item, ``update(n, **fields)``
    sets the count and the extra text fields (e.g. ``loss``) named in ``fields`` at construction."""

    def __init__(self, enabled: bool, label: str, total: int, done: int = 0, fields: dict | None = None):
        self.enabled, self.label, self.total, self.done = enabled, label, total, done
        self.fields = dict(fields or {})
        self._progress = self._task = None

    def start(self) -> "ProgressBar":
        if self.enabled and self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn(self.label), BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in self.fields]
            self._progress = Progress(*columns, TimeRemainingColumn())
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.done, **self.fields)
        return self

    def __enter__(self) -> "ProgressBar":
        return self.start()

    def advance(self, n: int = 1, **fields) -> None:
        """Count ``n`` more items; ``fields`` updates the text fields (named at construction)."""
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)

    def update(self, completed: int, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


__all__ = ["ProgressBar"]
