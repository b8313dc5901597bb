"""Loading a curated data set: a torch Dataset for training, and an HF ``datasets.Dataset`` for sharing.

Both read ``pairs.parquet`` (the kept pairs) and the image shards written by
:func:`egoframe.data.curate.curate`.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from egoframe.data.records import ActionRecord, Box, RECORDS_FILE, load_records
from egoframe.errors import InputError

_MIRRORED_ROLE = {"left_hand": "right_hand", "right_hand": "left_hand"}


def _load_split(root: str, split: str | None) -> list[ActionRecord]:
    if split not in (None, "all", "train", "test"):
        raise InputError(f"split must be 'train', 'test' or 'all', got {split!r}")
    records = load_records(os.path.join(root, RECORDS_FILE))
    if split not in (None, "all"):
        records = [r for r in records if r.split == split]
    return records


class FramePairDataset:
    """(input frame, action, target frame) pairs as tensors in [-1, 1], square-resized to ``resolution``.

    Items: ``input`` and ``target`` (3, R, R) float32; ``action``, ``description``, ``id``; ``boxes`` as a
    list of dicts with coordinates normalised to [0, 1] of the original frame. With ``flip`` the pair is
    mirrored with probability 0.5: boxes are mirrored and left/right hands swap roles (an egocentric
    mirror turns the right hand into a left one); the free-text description is left as it is.
    ``require_target=False`` admits records without a target (the Reason-Edit benchmark).
    """

    def __init__(self, root: str, resolution: int = 256, split: str | None = "train", flip: bool = False,
                 require_target: bool = True, seed: int | None = None):
        if resolution <= 0:
            raise InputError(f"resolution must be positive, got {resolution}")
        self.root = root
        self.resolution = resolution
        self.flip = flip
        self.records = _load_split(root, split)
        if require_target:
            lacking = [r.id for r in self.records if not r.target_path]
            if lacking:
                raise InputError(f"{len(lacking)} records in {root} have no target image (e.g. {lacking[0]}): "
                                 "pass require_target=False for an evaluation-only set")
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, rel_path: str, mirror: bool):
        import torch
        from PIL import Image

        path = os.path.join(self.root, rel_path)
        try:
            with Image.open(path) as image:
                image = image.convert("RGB").resize((self.resolution, self.resolution), Image.BICUBIC)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc}") from exc
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0  # (R, R, 3) in [-1, 1]
        if mirror:
            array = array[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))  # (3, R, R)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        mirror = self.flip and self._rng.random() < 0.5
        item = {
            "id": rec.id,
            "input": self._image(rec.input_path, mirror),
            "action": rec.action,
            "description": rec.description,
            "boxes": [_box_dict(b, rec, mirror) for b in rec.boxes],
            "flipped": mirror,
        }
        if rec.target_path:
            item["target"] = self._image(rec.target_path, mirror)
        return item


def _box_dict(box: Box, rec: ActionRecord, mirror: bool) -> dict[str, Any]:
    if rec.width and rec.height:
        x0, y0, x1, y1 = box.normalized(rec.width, rec.height)
    else:
        x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    role, label = box.role, box.label
    if mirror:
        x0, x1 = 1.0 - x1, 1.0 - x0
        role = _MIRRORED_ROLE.get(role, role)
        label = _MIRRORED_ROLE.get(label, label)
    return {"label": label, "role": role, "frame": box.frame, "box": (x0, y0, x1, y1)}


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep strings and box lists as lists (a box count differs between items)."""
    import torch

    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def to_hf_dataset(root: str, split: str | None = None):
    """The curated pairs as a ``datasets.Dataset`` with ``input_image``/``target_image`` Image columns."""
    try:
        import datasets
    except ImportError as exc:
        raise InputError("the Hugging Face `datasets` package is not installed: pip install datasets") from exc
    records = _load_split(root, split)
    columns: dict[str, list] = {k: [] for k in ("id", "source", "action", "description", "video_id", "split",
                                               "input_frame", "target_frame", "similarity", "input_image",
                                               "target_image")}
    for rec in records:
        columns["id"].append(rec.id)
        columns["source"].append(rec.source)
        columns["action"].append(rec.action)
        columns["description"].append(rec.description)
        columns["video_id"].append(rec.video_id)
        columns["split"].append(rec.split)
        columns["input_frame"].append(rec.input_frame)
        columns["target_frame"].append(rec.target_frame)
        columns["similarity"].append(float(rec.scores.get("similarity", float("nan"))))
        columns["input_image"].append(os.path.join(root, rec.input_path))
        columns["target_image"].append(os.path.join(root, rec.target_path) if rec.target_path else None)
    features = datasets.Features({
        "id": datasets.Value("string"), "source": datasets.Value("string"), "action": datasets.Value("string"),
        "description": datasets.Value("string"), "video_id": datasets.Value("string"),
        "split": datasets.Value("string"), "input_frame": datasets.Value("int64"),
        "target_frame": datasets.Value("int64"), "similarity": datasets.Value("float64"),
        "input_image": datasets.Image(), "target_image": datasets.Image(),
    })
    return datasets.Dataset.from_dict(columns, features=features)
