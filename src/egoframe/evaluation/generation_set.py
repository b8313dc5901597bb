"""The "generation set" layout (docs/formats.md): ``<dir>/samples.csv`` + image files, paths relative to the dir.

Columns: ``sample_id, action, description, input, target`` and one column per method whose cells are that
method's generated image for the row. A method column is any other column whose non-empty cells all name
image files (``.png .jpg .jpeg .webp``); other extra columns (scores, seeds, splits) are ignored. This module is
the layout's one home: the evaluation runner reads it with :func:`read_generation_set`, and the user-study app
(``egoframe.study.generation_set``) reads the same table with :func:`read_table` and :func:`is_image_column`,
adding its own checks on what raters will see.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from egoframe.errors import InputError

SAMPLES_FILE = "samples.csv"
RESERVED_COLUMNS = ("sample_id", "action", "description", "input", "target")
REQUIRED_COLUMNS = ("sample_id", "action", "input")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class Sample:
    sample_id: str
    action: str
    description: str
    input: Path | None
    target: Path | None
    generated: dict[str, Path] = field(default_factory=dict)  # method -> image path
    extra: dict[str, str] = field(default_factory=dict)  # other non-image columns (e.g. the world frame)


@dataclass
class GenerationSet:
    root: Path
    methods: list[str]
    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)


def read_generation_set(root: str | os.PathLike, reference_dir: str | os.PathLike | None = None,
                        methods: list[str] | None = None, check_files: bool = True) -> GenerationSet:
    """Read ``<root>/samples.csv``. ``input``/``target`` resolve against ``reference_dir`` when given (a set whose
    ground truth lives elsewhere), method cells against ``root``. Unknown methods, duplicate ids, empty method
    cells and missing files raise :class:`InputError`."""
    root = Path(root)
    table = root / SAMPLES_FILE
    reference_root = Path(reference_dir) if reference_dir is not None else root
    columns, rows = read_table(root)
    available = [c for c in columns if c not in RESERVED_COLUMNS and is_image_column(rows, c)]
    extra_columns = [c for c in columns if c not in RESERVED_COLUMNS and c not in available]
    if methods:
        unknown = [m for m in methods if m not in available]
        if unknown:
            raise InputError(f"{table}: no method column(s) {', '.join(unknown)}; "
                             f"its image columns are {', '.join(available) or 'none'}")
        chosen = list(methods)
    else:
        chosen = available
    if not rows:
        raise InputError(f"{table} has no rows")
    samples, seen = [], set()
    for line, row in enumerate(rows, start=2):
        sample_id = (row.get("sample_id") or "").strip()
        if not sample_id:
            raise InputError(f"{table}:{line}: empty sample_id")
        if sample_id in seen:
            raise InputError(f"{table}:{line}: duplicate sample_id {sample_id!r}")
        seen.add(sample_id)
        generated = {}
        for method in chosen:
            cell = (row.get(method) or "").strip()
            if not cell:
                raise InputError(f"{table}:{line}: sample {sample_id!r} has no image for method {method!r}")
            generated[method] = _resolve(root, cell, check_files, table, line)
        samples.append(Sample(
            sample_id=sample_id, action=(row.get("action") or "").strip(),
            description=(row.get("description") or "").strip(),
            input=_resolve(reference_root, row["input"].strip(), check_files, table, line) if (row.get("input") or "").strip() else None,
            target=_resolve(reference_root, row["target"].strip(), check_files, table, line) if (row.get("target") or "").strip() else None,
            generated=generated, extra={c: (row.get(c) or "").strip() for c in extra_columns}))
    return GenerationSet(root=root, methods=chosen, samples=samples)


def write_generation_set(root: str | os.PathLike, samples: list[Sample], methods: list[str]) -> Path:
    """Write ``samples.csv`` with paths made relative to ``root`` (files must already be inside it).

    Each sample's ``extra`` values become further (non-image) columns after the method columns."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / SAMPLES_FILE
    extra_columns = list(dict.fromkeys(k for s in samples for k in s.extra))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(RESERVED_COLUMNS) + list(methods) + extra_columns)
        for s in samples:
            rel = lambda p: "" if p is None else os.path.relpath(p, root)  # noqa: E731
            writer.writerow([s.sample_id, s.action, s.description, rel(s.input), rel(s.target)]
                            + [rel(s.generated[m]) for m in methods] + [s.extra.get(k, "") for k in extra_columns])
    return path


def read_table(root: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of ``<root>/samples.csv``, with the required columns checked; a BOM (spreadsheet
    exports) is tolerated and an unreadable CSV is an :class:`InputError`."""
    table = Path(root) / SAMPLES_FILE
    if not table.is_file():
        raise InputError(f"{root} is not a generation set: no {SAMPLES_FILE} (see docs/formats.md)")
    text = table.read_text(encoding="utf-8-sig")
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB): a broken export, not a bug
        raise InputError(f"{table}: not a readable CSV ({exc})") from None
    absent = [c for c in REQUIRED_COLUMNS if c not in header]
    if absent:
        raise InputError(f"{table}: missing column(s) {', '.join(absent)} (have {', '.join(header) or 'none'})")
    return header, rows


def is_image_column(rows: list[dict], column: str) -> bool:
    """A method column: some cell is filled and every filled cell names an image file."""
    values = [(row.get(column) or "").strip() for row in rows]
    return any(values) and all(v.lower().endswith(IMAGE_SUFFIXES) for v in values if v)


def _resolve(base: Path, cell: str, check: bool, table: Path, line: int) -> Path:
    path = Path(cell)
    if not path.is_absolute():
        path = base / path
    if check and not path.is_file():
        raise InputError(f"{table}:{line}: image not found: {path}")
    return path
