"""The released LEGO-Dataset (BolinLai/LEGO; ../shared/LEGO-FORMATS.md) -> ActionRecords.

``{ego4d,epickitchen}_{train,val}.json`` is a nested dict ``clip_id -> action_id -> record`` with

- ``image_0``: the input frame, ``image_1``: the target frame, both relative to ``EgoGen/<ds>/<split>/``
  (curation's ``--videos``); the frames are referenced where they are, never copied;
- ``action``: the label. Ego4D keeps the narration's ``#C C`` prefix, which the public code strips
  (``action[2:]`` twice) before lemmatising the first word as a verb ("#C C opens a paper bag" -> "open a
  paper bag"); EPIC-KITCHENS labels are used as they are;
- ``llava_forecast_finetune``: the description LEGO's instruction-tuned VLLM wrote (``text_prompt_key`` of
  ``configs/train_*.yaml``), kept as the record's description.

The split comes from the file name: ``*_val.json`` is the test set (the README: the hidden test sets are not
used, val serves as test), ``*_train.json`` training. A record without both paths, or with an empty action,
is skipped with its reason; missing or unreadable frames are skipped by curation.
"""

from __future__ import annotations

import json
import os
import re

from egoframe.data.records import ActionRecord
from egoframe.data.report import Skip
from egoframe.errors import InputError
from egoframe.utils.nlp import lemmatize_first_verb

DESCRIPTION_KEY = "llava_forecast_finetune"
_SPLIT = re.compile(r"_(train|val|test)\.json$", re.IGNORECASE)


def ego4d_action(raw: str, lemmatize=None) -> str:
    """The public code's Ego4D label: drop ``#C C`` (``action[2:]`` twice, stripped), lemmatise the first
    word as a verb. ``lemmatize`` is :func:`egoframe.utils.nlp.lemmatize_first_verb` unless given."""
    text = raw.strip()
    for _ in range(2):
        text = text[2:].strip()
    if lemmatize is None:
        lemmatize = lemmatize_first_verb
    return lemmatize(text) if text else ""


def split_of(path: str) -> str:
    match = _SPLIT.search(os.path.basename(path))
    if match is None:
        raise InputError(f"{path}: a LEGO annotation file is named <dataset>_<train|val>.json (the split is read "
                         "from the name)")
    return "train" if match.group(1).lower() == "train" else "test"


def read_lego(path: str, frames_root: str, lemmatize=None) -> tuple[list[ActionRecord], list[Skip]]:
    """Records of one ``{ds}_{split}.json``; image paths resolved against ``frames_root`` (absolute)."""
    if not os.path.isfile(path):
        raise InputError(f"LEGO annotation file not found: {path}")
    split = split_of(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict clip_id -> action_id -> record, got a {type(data).__name__}")
    source = "lego-ego4d" if os.path.basename(path).lower().startswith("ego4d") else "lego-epic"
    root = os.path.abspath(frames_root)
    records, skips = [], []
    for clip_id in sorted(data):
        actions = data[clip_id]
        if not isinstance(actions, dict):
            skips.append(Skip(str(clip_id), "clip entry is not a dict of actions"))
            continue
        for action_id in sorted(actions, key=str):
            rec_id = f"{clip_id}_{action_id}"
            row = actions[action_id]
            if not isinstance(row, dict):
                skips.append(Skip(rec_id, "action entry is not a dict"))
                continue
            image_0, image_1 = row.get("image_0"), row.get("image_1")
            raw = row.get("action")
            if not isinstance(image_0, str) or not image_0 or not isinstance(image_1, str) or not image_1:
                skips.append(Skip(rec_id, "missing image_0 or image_1"))
                continue
            if not isinstance(raw, str) or not raw.strip():
                skips.append(Skip(rec_id, "missing action"))
                continue
            # Ego4D narrations start with "#C C" (camera wearer); EPIC labels do not.
            label = ego4d_action(raw, lemmatize) if raw.lstrip().startswith("#") else raw.strip()
            if not label:
                skips.append(Skip(rec_id, f"empty action after removing the narration prefix ({raw!r})"))
                continue
            description = row.get(DESCRIPTION_KEY)
            words = label.split()
            records.append(ActionRecord(
                id=rec_id, source=source, action=label, verb=words[0], noun=" ".join(words[1:]),
                video_id=str(clip_id), narration=raw.strip(), split=split,
                description=description.strip() if isinstance(description, str) else "",
                extra={"input_src": os.path.join(root, image_0), "target_src": os.path.join(root, image_1),
                       "image_0": image_0, "image_1": image_1,  # released features are found by image_0
                       "lego_action_id": str(action_id), "lego_file": os.path.basename(path)},
            ))
    return records, skips
