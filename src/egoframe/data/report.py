"""What a curation run skipped and why: every bad item is kept as (id, reason), never silently dropped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Skip:
    id: str  # the record id (narration id, Ego4D action id, row id) or the file/video it came from
    reason: str  # one line: what was wrong, e.g. "timestamp beyond video end (12.40 s > 10.00 s)"
    stage: str = "read"  # "read" (annotation parsing), "frames" (decoding/boxes), "filter"

    def to_dict(self) -> dict:
        return {"id": self.id, "reason": self.reason, "stage": self.stage}

    @classmethod
    def from_dict(cls, row: dict) -> "Skip":
        return cls(row["id"], row["reason"], row.get("stage", "read"))
