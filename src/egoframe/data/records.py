"""The record type every data reader produces and every later stage consumes.

One :class:`ActionRecord` is one (input frame, action, target frame) pair, whatever it came from
(the embedded world, Ego4D FHO, EPIC-KITCHENS-100, or an image-editing data set). Readers may fill
``extra`` with source-specific fields; new optional fields must keep a default so old parquet files load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from egoframe.errors import InputError


@dataclass
class Box:
    """An annotated box in pixel coordinates of the frame it belongs to.

    ``label`` is what the box shows: ``"left_hand"``, ``"right_hand"`` or an object noun such as
    ``"red cup"``; ``role`` is the Ego4D-style role (``"left_hand"``, ``"right_hand"``,
    ``"object_of_change"``, ``"tool"``, ``"destination"``, ``"other"``).
    """

    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    role: str = "other"
    frame: str = "input"  # which annotated frame the box was drawn on ("input", "pnr", ...)

    def normalized(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Box as fractions of the frame size, the form the LEGO enrichment prompt uses."""
        return (self.x0 / width, self.y0 / height, self.x1 / width, self.y1 / height)


@dataclass
class ActionRecord:
    id: str
    source: str  # "world" | "ego4d" | "epic100" | "ip2p" | "magicbrush" | "reason-edit" ...
    action: str  # the short label, e.g. "take cup"
    verb: str = ""
    noun: str = ""
    video_id: str = ""
    participant_id: str = ""
    fps: float = 0.0
    input_frame: int = -1  # frame index in the video (0-based)
    target_frame: int = -1
    input_time: float = -1.0  # seconds
    target_time: float = -1.0
    width: int = 0
    height: int = 0
    boxes: list[Box] = field(default_factory=list)
    narration: str = ""
    input_path: str = ""  # extracted image files, relative to the data set root
    target_path: str = ""
    description: str = ""  # the enriched description, once written
    split: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "ActionRecord":
        row = dict(row)
        row["boxes"] = [b if isinstance(b, Box) else Box(**b) for b in (row.get("boxes") or [])]
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in row.items() if k in known})


RECORDS_FILE = "pairs.parquet"


def save_records(records: list[ActionRecord], path: str) -> None:
    """Write records as parquet atomically (temp file + rename), one row per record.

    ``scores`` and ``extra`` are stored as JSON strings so that their keys can differ between rows.
    """
    import json
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for rec in records:
        row = rec.to_dict()
        row["scores"] = json.dumps(row["scores"], sort_keys=True)
        row["extra"] = json.dumps(row["extra"], sort_keys=True)
        rows.append(row)
    table = pa.Table.from_pylist(rows) if rows else pa.Table.from_pylist([], schema=_empty_schema())
    tmp = f"{path}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def load_records(path: str) -> list[ActionRecord]:
    """Read records written by :func:`save_records`."""
    import json
    import os

    import pyarrow.parquet as pq

    if os.path.isdir(path):
        path = os.path.join(path, RECORDS_FILE)
    if not os.path.exists(path):
        raise InputError(f"no data set records at {path}: run `egoframe data curate` first")
    out = []
    for row in pq.read_table(path).to_pylist():
        row["scores"] = json.loads(row.get("scores") or "{}")
        row["extra"] = json.loads(row.get("extra") or "{}")
        out.append(ActionRecord.from_dict(row))
    return out


def _empty_schema():
    import pyarrow as pa

    box = pa.struct([(n, pa.float64()) for n in ("x0", "y0", "x1", "y1")] + [
        ("label", pa.string()), ("role", pa.string()), ("frame", pa.string())])
    fields = []
    for name, f in ActionRecord.__dataclass_fields__.items():
        if name == "boxes":
            fields.append((name, pa.list_(box)))
        elif f.type in ("int",):
            fields.append((name, pa.int64()))
        elif f.type in ("float",):
            fields.append((name, pa.float64()))
        else:
            fields.append((name, pa.string()))
    return pa.schema(fields)
