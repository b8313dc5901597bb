"""Reading a generation set: the methods x samples outputs a study is built from.

Layout (docs/formats.md; its one home is ``egoframe.evaluation.generation_set``, whose table reader this uses)::

    <dir>/samples.csv   sample_id, action, description, input, target, <method>, <method>, ...
    <dir>/...           the images; every path in the CSV is relative to <dir>

A method column is any column outside the fixed five whose every non-empty cell names an image file;
other extra columns (scores, splits, seeds) are ignored, so evaluation can add columns freely.
``methods=`` names the method columns explicitly when a set needs it.

A *description* set (the ``describe`` study, papers/000 Fig. 11: is this description right for these two
frames?) has the same layout, but its "methods" are description sources: text columns, one description per
sample and source, with ``input`` and ``target`` both required. ``kind="texts"`` reads one; its sources are
``methods=`` or, by default, the single ``description`` column.

Paths may leave the folder (the evaluation writer makes ``../`` paths to ground truth kept elsewhere) or be
absolute, for sets on the server's own disk; ``confine=True`` (uploaded sets) refuses both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from egoframe.errors import InputError
from egoframe.evaluation.generation_set import RESERVED_COLUMNS as FIXED_COLUMNS
from egoframe.evaluation.generation_set import SAMPLES_FILE, is_image_column, read_table

MAX_ACTION_CHARS = 300  # a label is a few words; a paragraph here is a broken export
MAX_DESCRIPTION_CHARS = 2000
MAX_NAME_CHARS = 64


@dataclass
class Sample:
    sample_id: str
    action: str
    description: str
    input: str  # absolute paths from here on
    target: str | None
    outputs: dict[str, str] = field(default_factory=dict)  # method -> image path
    texts: dict[str, str] = field(default_factory=dict)  # description source -> text (kind="texts")


@dataclass
class GenerationSet:
    root: str
    methods: list[str]
    samples: list[Sample]


def clean_text(value: str, name: str, max_chars: int, *, required: bool = False) -> str:
    """Text shown to raters: stripped, bounded, free of control characters (HTML escaping is the templates')."""
    value = (value or "").strip()
    if required and not value:
        raise InputError(f"{name} is empty")
    if len(value) > max_chars:
        raise InputError(f"{name} is {len(value)} characters; at most {max_chars} are accepted")
    bad = [c for c in value if ord(c) < 32 and c not in "\t\n" or ord(c) == 127]
    if bad:
        raise InputError(f"{name} contains control character {bad[0]!r}")
    return value


def check_name(value: str, what: str) -> str:
    """Method and study names end up in URLs, CSV headers and tables: keep them plain."""
    value = value.strip()
    ok = value and len(value) <= MAX_NAME_CHARS and all(c.isalnum() or c in "-_.+" for c in value)
    if not ok:
        raise InputError(f"{what} {value!r} must be 1-{MAX_NAME_CHARS} letters, digits or - _ . +")
    return value


KINDS = ("images", "texts")


def read_generation_set(root: str | os.PathLike, methods: list[str] | None = None,
                        confine: bool = False, kind: str = "images") -> GenerationSet:
    """Read ``<root>/samples.csv``; raise :class:`InputError` naming the row and column of any problem.

    kind: "images" (a method is a column of image paths) or "texts" (a method is a column of descriptions)."""
    if kind not in KINDS:
        raise InputError(f"generation set kind must be one of {', '.join(KINDS)}, got {kind!r}")
    root = os.path.abspath(os.fspath(root))
    path = os.path.join(root, SAMPLES_FILE)
    header, rows = read_table(root)
    if not rows:
        raise InputError(f"{path}: no samples")
    if methods is None and kind == "texts":
        methods = ["description"] if "description" in header else []
    elif methods is None:
        methods = [c for c in header if c not in FIXED_COLUMNS and is_image_column(rows, c)]
    else:
        unknown = [m for m in methods if m not in header]
        if unknown:
            raise InputError(f"{path}: no column for method(s) {', '.join(unknown)}")
    if not methods:
        what = "a description column (or name the text columns with methods=)" if kind == "texts" else \
            "method columns (a column of image paths per method)"
        raise InputError(f"{path}: no {what}")
    methods = [check_name(m, "method name") for m in methods]
    samples, seen = [], set()
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        sample_id = clean_text(row.get("sample_id", ""), f"{where}: sample_id", MAX_NAME_CHARS, required=True)
        if sample_id in seen:
            raise InputError(f"{where}: duplicate sample_id {sample_id!r}")
        seen.add(sample_id)
        target = (row.get("target") or "").strip()
        if kind == "texts" and not target:
            raise InputError(f"{where}: target is empty (a description is judged against input and target)")
        samples.append(Sample(
            sample_id=sample_id,
            action=clean_text(row.get("action", ""), f"{where}: action", MAX_ACTION_CHARS, required=True),
            description=clean_text(row.get("description", ""), f"{where}: description", MAX_DESCRIPTION_CHARS),
            input=_image_path(root, row.get("input", ""), f"{where}: input", confine),
            target=_image_path(root, target, f"{where}: target", confine) if target else None,
            outputs={} if kind == "texts" else {
                m: _image_path(root, row.get(m, ""), f"{where}: {m}", confine) for m in methods},
            texts={m: clean_text(row.get(m, ""), f"{where}: {m}", MAX_DESCRIPTION_CHARS, required=True)
                   for m in methods} if kind == "texts" else {},
        ))
    return GenerationSet(root=root, methods=methods, samples=samples)


def _image_path(root: str, rel: str, where: str, confine: bool) -> str:
    rel = (rel or "").strip()
    if not rel:
        raise InputError(f"{where}: empty image path")
    if confine and os.path.isabs(rel):
        raise InputError(f"{where}: {rel!r} must be relative to the generation set folder")
    path = os.path.realpath(os.path.join(root, rel))
    # In an uploaded set, a path that climbs out would read any file on the server into a study.
    if confine and os.path.commonpath([path, os.path.realpath(root)]) != os.path.realpath(root):
        raise InputError(f"{where}: {rel!r} points outside the generation set folder")
    if not os.path.isfile(path):
        raise InputError(f"{where}: image {rel!r} not found")
    return path
