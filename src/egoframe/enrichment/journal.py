"""The on-disk journal that makes network enrichment resumable and idempotent.

One SQLite file in WAL mode next to the data set. Every request attempt and every finished answer is one
committed transaction, so a process killed at any instant leaves each item either finished (answer stored,
never requested again) or unfinished (requested again on the next run) — never half-written or twice done.
``synchronous=NORMAL`` is enough for that: in WAL mode a killed *process* loses no committed transaction;
only a power cut may lose the last few, which are then simply requested again.

Rows are keyed by (item id, backend, model): switching the model gives fresh rows instead of reusing answers
written by another model.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass

from egoframe.errors import EgoframeError

JOURNAL_FILE = "enrichment-journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    description TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    prompt_fingerprint TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    PRIMARY KEY (item_id, backend, model)
);
"""


@dataclass
class JournalRow:
    item_id: str
    status: str
    description: str
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    error: str


class Journal:
    """SQLite journal for one (backend, model) of one data set; one writer process at a time."""

    def __init__(self, path: str, backend: str, model: str, prompt_fingerprint: str = "") -> None:
        self.path = path
        self.backend = backend
        self.model = model
        self.prompt_fingerprint = prompt_fingerprint
        self._lock_fh = _take_run_lock(path + ".lock")
        try:
            self._db = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions made explicit
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._lock_fh.close()
            raise EgoframeError(f"cannot open enrichment journal {path}: {exc} (move it away to start over)") from None

    def close(self) -> None:
        self._db.close()
        self._lock_fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finished_ids(self, include_failed: bool = True) -> set[str]:
        """Ids that a run must not request again (failed ones too unless they are to be retried)."""
        statuses = ("done", "failed") if include_failed else ("done",)
        marks = ",".join("?" * len(statuses))
        cur = self._db.execute(
            f"SELECT item_id FROM items WHERE backend=? AND model=? AND status IN ({marks})",
            (self.backend, self.model, *statuses))
        return {row[0] for row in cur}

    def record_attempt(self, item_id: str, prompt_tokens: int, completion_tokens: int, error: str) -> None:
        """A paid or failed attempt that gave no usable answer: counted, item stays pending."""
        self._upsert(item_id, "pending", "", prompt_tokens, completion_tokens, error)

    def record_done(self, item_id: str, description: str, prompt_tokens: int, completion_tokens: int) -> None:
        """The answer and the done mark land in one statement, hence one transaction."""
        self._upsert(item_id, "done", description, prompt_tokens, completion_tokens, "")

    def record_failed(self, item_id: str, error: str, prompt_tokens: int = 0, completion_tokens: int = 0,
                      count_attempt: bool = True) -> None:
        self._upsert(item_id, "failed", "", prompt_tokens, completion_tokens, error, count_attempt)

    def _upsert(self, item_id: str, status: str, description: str, prompt_tokens: int, completion_tokens: int,
                error: str, count_attempt: bool = True) -> None:
        add = 1 if count_attempt else 0
        self._db.execute(
            """INSERT INTO items (item_id, backend, model, status, description, attempts, prompt_tokens,
                                  completion_tokens, error, prompt_fingerprint, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (item_id, backend, model) DO UPDATE SET
                   status=excluded.status, description=excluded.description,
                   attempts=items.attempts + excluded.attempts,
                   prompt_tokens=items.prompt_tokens + excluded.prompt_tokens,
                   completion_tokens=items.completion_tokens + excluded.completion_tokens,
                   error=excluded.error, prompt_fingerprint=excluded.prompt_fingerprint,
                   updated_at=excluded.updated_at""",
            (item_id, self.backend, self.model, status, description, add, prompt_tokens, completion_tokens,
             error, self.prompt_fingerprint, time.time()))

    def rows(self) -> dict[str, JournalRow]:
        cur = self._db.execute(
            "SELECT item_id, status, description, attempts, prompt_tokens, completion_tokens, error "
            "FROM items WHERE backend=? AND model=?", (self.backend, self.model))
        return {r[0]: JournalRow(*r) for r in cur}


def _take_run_lock(path: str):
    """An exclusive lock held for the run: two runs on one data set would pay twice for the same items.

    flock is released by the kernel when the process dies, so a killed run never leaves a stale lock.
    """
    fh = open(path, "a+")
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process guard, the journal still keeps items consistent
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise EgoframeError(f"another enrichment run is using {os.path.dirname(path) or '.'}; "
                            "wait for it to finish or stop it first") from None
    return fh
