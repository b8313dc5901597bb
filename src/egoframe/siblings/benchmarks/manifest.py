"""Benchmark manifests (CSV, JSON or JSONL; one row per sample, paths relative to the manifest's folder): read and
check them into :class:`BenchSample` s, write them, build one from the Reason-Edit release layout (SmartEdit,
papers/002), and find each sample's generated images (``<generated>/<id>.png``; ReasonPix2Pix:
``<generated>/direct/<id>.png`` and ``<generated>/reasoning/<id>.png``)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from egoframe.errors import InputError
from egoframe.siblings.benchmarks.protocols import PROTOCOLS
from egoframe.utils.images import IMAGE_EXTENSIONS

_PATH_COLUMNS = ("input", "mask", "target")


@dataclass
class BenchSample:
    sample_id: str
    input: Path
    fields: dict[str, str]  # every text column of the row (empty optional cells left out)
    mask: Path | None = None
    target: Path | None = None
    generated: dict[str, Path] = field(default_factory=dict)  # column -> image

    def text(self, name: str) -> str | None:
        return self.fields.get(name) or None


def read_manifest(path: str | os.PathLike, protocol: str) -> list[BenchSample]:
    """Rows of a CSV / JSON (a list of objects, or {"samples": [...]}) / JSONL manifest as samples.

    Paths are relative to the manifest's folder (or absolute). Missing columns, empty required cells,
    duplicate or unsafe ids and missing files raise :class:`InputError` naming the row.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown benchmark protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    rows = _read_rows(path)
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    present = set().union(*(row.keys() for row in rows))
    missing = [c for c in spec.required if c not in present]
    if missing:
        raise InputError(f"manifest {path} lacks column(s) {', '.join(missing)} "
                         f"(the {protocol} protocol needs {', '.join(spec.required)})")
    root = path.parent
    samples, seen = [], set()
    for number, row in enumerate(rows, start=1):
        where = f"manifest {path.name} row {number}"
        empty = [c for c in spec.required if not row.get(c)]
        if empty:
            raise InputError(f"{where}: empty {', '.join(empty)}")
        sample_id = row["id"]
        _check_id(sample_id, where)
        if sample_id in seen:
            raise InputError(f"{where}: duplicate id {sample_id!r}")
        seen.add(sample_id)
        files = {}
        for column in _PATH_COLUMNS:
            if column in spec.required:
                file = Path(row[column]) if Path(row[column]).is_absolute() else root / row[column]
                if not file.is_file():
                    raise InputError(f"{where} (id {sample_id}): {column} file not found: {file}")
                files[column] = file
        known = set(spec.required) | set(spec.optional)
        text = {k: v for k, v in row.items() if k in known and k not in _PATH_COLUMNS and v}
        samples.append(BenchSample(sample_id, files["input"], text, files.get("mask"), files.get("target")))
    return samples


def _read_rows(path: Path) -> list[dict[str, str]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames:
                    raise InputError(f"manifest {path} is empty (no header row)")
                raw = list(reader)
                for number, row in enumerate(raw, start=1):
                    if None in row:
                        raise InputError(f"manifest {path.name} row {number}: more cells than header columns")
        elif suffix == ".jsonl":
            raw = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        raw.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InputError(f"manifest {path.name} line {number}: invalid JSON ({exc.msg})") from None
        elif suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InputError(f"manifest {path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
            raw = data.get("samples") if isinstance(data, dict) else data
            if not isinstance(raw, list):
                raise InputError(f"manifest {path}: expected a list of samples or {{\"samples\": [...]}}")
        else:
            raise InputError(f"manifest {path}: use a .csv, .json or .jsonl file")
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text") from None
    rows = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise InputError(f"manifest {path.name} row {number}: expected an object with named fields")
        rows.append({str(k).strip(): ("" if v is None else str(v).strip()) for k, v in item.items()})
    return rows


def _check_id(sample_id: str, where: str) -> None:
    parts = PurePosixPath(sample_id).parts
    if "\\" in sample_id or sample_id.startswith("/") or ".." in parts or not parts:
        raise InputError(f"{where}: id {sample_id!r} must be a relative name without '..' (it names the "
                         "generated image)")


def write_manifest(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write manifest rows (dicts) as CSV with the union of their keys as header, ``id`` first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(["id", *(k for row in rows for k in row)]))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def reason_edit_manifest_from_release(root: str | os.PathLike,
                                      relative_to: str | os.PathLike | None = None) -> list[dict]:
    """Manifest rows for the Reason-Edit release layout (REFERENCE.md, SmartEdit).

    One folder per category (``1-Left-Right`` ... ``5-Multiple-Objects``, ``6-Reasoning``) holding ``X.png``
    inputs, ``X_mask.jpg`` masks and one ``.txt`` file whose non-blank lines, in the sorted order of the
    inputs, read ``<instruction> CLIP: <target phrase>``. Masks are paired by name (``X`` with ``X_mask``),
    not by sort order. Ids are ``<category>/<X>``; paths are relative to ``relative_to`` (the folder the
    manifest will be written to; default ``root``).
    Folders whose name contains "reason" get ``scenario`` = reasoning, the others understanding (SmartEdit
    Table 1's two column groups).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Reason-Edit folder not found: {root}")
    base = Path(relative_to) if relative_to is not None else root

    def rel(file: Path) -> str:
        return Path(os.path.relpath(file.resolve(), base.resolve())).as_posix()

    rows = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*_mask.*")))
    if not folders:
        raise InputError(f"{root} has no category folders with *_mask images (the Reason-Edit release layout)")
    for folder in folders:
        inputs = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() == ".png" and not p.stem.endswith("_mask"))
        texts = sorted(folder.glob("*.txt"))
        if len(texts) != 1:
            raise InputError(f"{folder} must hold exactly one instruction .txt file, found {len(texts)}")
        lines = [line.strip() for line in texts[0].read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) != len(inputs):
            raise InputError(f"{texts[0]} has {len(lines)} instruction lines for {len(inputs)} input images")
        scenario = "reasoning" if "reason" in folder.name.lower() else "understanding"
        for image, line in zip(inputs, lines):
            masks = [p for p in folder.glob(f"{image.stem}_mask.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
            if len(masks) != 1:
                raise InputError(f"{image}: expected one mask {image.stem}_mask.jpg beside it, found {len(masks)}")
            instruction, _, phrase = line.partition("CLIP:")
            rows.append({"id": f"{folder.name}/{image.stem}", "input": rel(image),
                         "mask": rel(masks[0]), "instruction": instruction.strip(),
                         "target_phrase": phrase.strip(), "category": folder.name, "scenario": scenario})
    return rows


def find_generated(samples: Sequence[BenchSample], generated_dir: str | os.PathLike, protocol: str) -> None:
    """Fill ``sample.generated`` from ``<dir>/<id>.<ext>`` (rp2p: ``<dir>/<direct|reasoning>/<id>.<ext>``)."""
    spec = PROTOCOLS[protocol]
    base = Path(generated_dir)
    if not base.is_dir():
        raise InputError(f"generated-images folder not found: {base}")
    missing, ambiguous = [], []
    for column in spec.columns:
        folder = base / column if spec.subfolders else base
        for sample in samples:
            found = _image_files(folder, sample.sample_id)
            label = f"{column}/{sample.sample_id}" if spec.subfolders else sample.sample_id
            if not found:
                missing.append(label)
            elif len(found) > 1:
                ambiguous.append(f"{label} ({', '.join(p.name for p in found)})")
            else:
                sample.generated[column] = found[0]
    if missing:
        layout = "<dir>/direct/<id>.png and <dir>/reasoning/<id>.png" if spec.subfolders else "<dir>/<id>.png"
        raise InputError(f"{len(missing)} generated image(s) missing in {base} (e.g. {', '.join(missing[:3])}); "
                         f"expected {layout}")
    if ambiguous:
        raise InputError(f"several generated images for one id in {base}: {'; '.join(ambiguous[:3])}")


def _image_files(folder: Path, sample_id: str) -> list[Path]:
    exact = folder / sample_id
    if exact.suffix.lower() in IMAGE_EXTENSIONS and exact.is_file():
        return [exact]
    found = []
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{sample_id}{ext}", folder / f"{sample_id}{ext.upper()}"):
            if candidate.is_file() and candidate not in found:
                found.append(candidate)
    return found
