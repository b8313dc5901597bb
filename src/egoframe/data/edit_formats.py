"""Image-editing data sets of the sibling systems -> ActionRecords (input image, instruction, edited image).

- InstructPix2Pix, clip-filtered folders: ``<root>/[shard/]<prompt dir>/prompt.json`` (keys ``input``,
  ``edit``, ``output``) with ``<seed>_0.jpg`` (input) and ``<seed>_1.jpg`` (edited) per seed.
- InstructPix2Pix, HF parquet: ``input_image``/``original_image``, ``edited_image``, ``edit_prompt``
  (+ ``original_prompt``/``edited_prompt`` when present); images are ``{"bytes", "path"}`` structs.
- MagicBrush, HF parquet: ``img_id, turn_index, source_img, mask_img, instruction, target_img``.
- Reason-Edit (SmartEdit's benchmark): category folders (``1-Left-Right`` ...), each with ``*.png``
  inputs, ``*_mask.jpg`` masks and one ``*_text.txt`` whose line i is ``<instruction> CLIP: <phrase>``
  for the i-th png in sorted order (the pairing SmartEdit's evaluation uses). It has no target images.

Records carry where their images are in ``extra`` (``input_src``/``target_src``/``mask_src`` file paths,
or ``parquet``/``row``/column names), and curation copies them into the data set's shards.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re

import numpy as np

from egoframe.data.records import ActionRecord
from egoframe.data.report import Skip
from egoframe.errors import InputError

_SEED_IMAGE = re.compile(r"^(\d+)_0\.(jpg|jpeg|png)$")


def read_ip2p_folders(root: str) -> tuple[list[ActionRecord], list[Skip]]:
    if not os.path.isdir(root):
        raise InputError(f"InstructPix2Pix folder not found: {root}")
    records, skips = [], []
    prompt_files = sorted(glob.glob(os.path.join(root, "**", "prompt.json"), recursive=True))
    if not prompt_files:
        raise InputError(f"no */prompt.json under {root}: is it an InstructPix2Pix clip-filtered-dataset folder?")
    for prompt_file in prompt_files:
        folder = os.path.dirname(prompt_file)
        name = os.path.relpath(folder, root).replace(os.sep, "_")
        try:
            with open(prompt_file, encoding="utf-8") as handle:
                prompt = json.load(handle)
            edit = prompt["edit"].strip()
        except (OSError, json.JSONDecodeError, KeyError, AttributeError) as exc:
            skips.append(Skip(name, f"unreadable prompt.json: {exc!r}"))
            continue
        for filename in sorted(os.listdir(folder)):
            match = _SEED_IMAGE.match(filename)
            if not match:
                continue
            seed, ext = match.groups()
            target = os.path.join(folder, f"{seed}_1.{ext}")
            rec_id = f"{name}_{seed}"
            if not os.path.isfile(target):
                skips.append(Skip(rec_id, f"missing edited image {seed}_1.{ext}"))
                continue
            records.append(ActionRecord(
                id=rec_id, source="ip2p", action=edit, video_id=name, narration=prompt.get("input", ""),
                extra={"input_src": os.path.join(folder, filename), "target_src": target,
                       "output_caption": prompt.get("output", "")}))
    return records, skips


def _parquet_files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = []
    if not files:
        raise InputError(f"no parquet files at {path}")
    return files


def read_ip2p_parquet(path: str) -> tuple[list[ActionRecord], list[Skip]]:
    import pyarrow.parquet as pq

    records, skips = [], []
    for file in _parquet_files(path):
        names = pq.ParquetFile(file).schema_arrow.names
        input_col = next((c for c in ("input_image", "original_image") if c in names), None)
        if input_col is None or "edited_image" not in names or "edit_prompt" not in names:
            raise InputError(f"{file} lacks InstructPix2Pix columns (input_image|original_image, edited_image, edit_prompt)")
        text_cols = [c for c in ("edit_prompt", "original_prompt", "edited_prompt") if c in names]
        table = pq.read_table(file, columns=text_cols)
        stem = os.path.splitext(os.path.basename(file))[0]
        for row_index, row in enumerate(table.to_pylist()):
            rec_id = f"{stem}_{row_index:06d}"
            edit = (row.get("edit_prompt") or "").strip()
            if not edit:
                skips.append(Skip(rec_id, "empty edit_prompt"))
                continue
            records.append(ActionRecord(
                id=rec_id, source="ip2p", action=edit, video_id=rec_id, narration=row.get("original_prompt") or "",
                extra={"parquet": file, "row": row_index, "input_col": input_col, "target_col": "edited_image",
                       "output_caption": row.get("edited_prompt") or ""}))
    return records, skips


MAGICBRUSH_COLUMNS = ("img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img")


def read_magicbrush(path: str) -> tuple[list[ActionRecord], list[Skip]]:
    import pyarrow.parquet as pq

    records, skips = [], []
    for file in _parquet_files(path):
        names = pq.ParquetFile(file).schema_arrow.names
        missing = [c for c in MAGICBRUSH_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{file} lacks MagicBrush columns {missing}")
        table = pq.read_table(file, columns=["img_id", "turn_index", "instruction"])
        for row_index, row in enumerate(table.to_pylist()):
            rec_id = f"{row['img_id']}_{row['turn_index']}"
            instruction = (row.get("instruction") or "").strip()
            if not instruction:
                skips.append(Skip(rec_id, "empty instruction"))
                continue
            # video_id = img_id keeps all turns of one image in the same split.
            records.append(ActionRecord(
                id=rec_id, source="magicbrush", action=instruction, video_id=str(row["img_id"]),
                extra={"parquet": file, "row": row_index, "input_col": "source_img", "target_col": "target_img",
                       "mask_col": "mask_img", "turn_index": int(row["turn_index"])}))
    return records, skips


def read_reason_edit(root: str) -> tuple[list[ActionRecord], list[Skip]]:
    if not os.path.isdir(root):
        raise InputError(f"Reason-Edit folder not found: {root}")
    records, skips = [], []
    categories = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                        and glob.glob(os.path.join(root, d, "*_text.txt")))
    if not categories:
        raise InputError(f"no category folders with *_text.txt under {root}: is it the Reason-Edit benchmark?")
    for category in categories:
        folder = os.path.join(root, category)
        (text_file, *others) = sorted(glob.glob(os.path.join(folder, "*_text.txt")))
        with open(text_file, encoding="utf-8") as handle:
            lines = [line.rstrip("\n") for line in handle if line.strip()]
        images = sorted(glob.glob(os.path.join(folder, "*.png")))
        masks = {os.path.basename(m)[: -len("_mask.jpg")]: m for m in glob.glob(os.path.join(folder, "*_mask.jpg"))}
        for index, image in enumerate(images):
            stem = os.path.splitext(os.path.basename(image))[0]
            rec_id = f"{category}_{stem}"
            if index >= len(lines):
                skips.append(Skip(rec_id, f"no instruction line {index + 1} in {os.path.basename(text_file)}"))
                continue
            instruction, _, phrase = lines[index].partition("CLIP:")
            if not instruction.strip():
                skips.append(Skip(rec_id, f"empty instruction on line {index + 1}"))
                continue
            records.append(ActionRecord(
                id=rec_id, source="reason-edit", action=instruction.strip(), video_id=rec_id,
                extra={"input_src": image, "mask_src": masks.get(stem, ""), "clip_phrase": phrase.strip(),
                       "category": category}))
    return records, skips


def load_source_images(records: list[ActionRecord]) -> dict[str, dict[str, np.ndarray]]:
    """``{id: {"input": arr, "target": arr, "mask": arr}}`` for records from the readers above.

    Parquet rows are read per row group, so a unit of consecutive rows costs one group read, not a file.
    Unreadable images are left out; the caller reports them.
    """
    from PIL import Image

    out: dict[str, dict[str, np.ndarray]] = {}
    by_file: dict[str, list[ActionRecord]] = {}
    for rec in records:
        if "parquet" in rec.extra:
            by_file.setdefault(rec.extra["parquet"], []).append(rec)
            continue
        images = {}
        for key in ("input", "target", "mask"):
            src = rec.extra.get(f"{key}_src")
            if src:
                try:
                    with Image.open(src) as image:
                        images[key] = np.asarray(image.convert("L" if key == "mask" else "RGB"))
                except (OSError, ValueError):
                    pass
        out[rec.id] = images
    for file, recs in by_file.items():
        for rec, row in zip(recs, _read_parquet_rows(file, [r.extra["row"] for r in recs])):
            images = {}
            for key in ("input", "target", "mask"):
                col = rec.extra.get(f"{key}_col")
                cell = row.get(col) if col else None
                data = cell.get("bytes") if isinstance(cell, dict) else cell
                if data:
                    try:
                        with Image.open(io.BytesIO(data)) as image:
                            images[key] = np.asarray(image.convert("L" if key == "mask" else "RGB"))
                    except (OSError, ValueError):
                        pass
            out[rec.id] = images
    return out


def _read_parquet_rows(file: str, rows: list[int]) -> list[dict]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    starts, total = [], 0
    for group in range(parquet.num_row_groups):
        starts.append(total)
        total += parquet.metadata.row_group(group).num_rows
    cache: dict[int, list[dict]] = {}
    out = []
    for row in rows:
        group = max(g for g, s in enumerate(starts) if s <= row)
        if group not in cache:
            cache.clear()  # keep one decoded group in memory at a time
            cache[group] = parquet.read_row_group(group).to_pylist()
        out.append(cache[group][row - starts[group]])
    return out
