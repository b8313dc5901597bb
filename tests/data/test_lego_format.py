"""`egoframe data curate --format lego`: the released LEGO-Dataset's JSON and frames, referenced in place."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from egoframe.data.lego import ego4d_action, read_lego, split_of
from egoframe.data.records import load_records
from egoframe.errors import InputError


def _frame(path, colour):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((48, 64, 3), colour, np.uint8)).save(path, quality=95)


def make_lego_dataset(root) -> tuple[str, str]:
    """EgoGen/ego4d.fho/val/<clip>/<action>/*.jpg and ego4d_val.json as the public code reads them."""
    frames = os.path.join(root, "EgoGen", "ego4d.fho", "val")
    data = {
        "clip-a": {
            "0": {"image_0": "clip-a/0/pre_00012.jpg", "image_1": "clip-a/0/pnr_00030.jpg",
                  "action": "#C C opens a paper bag", "llava_forecast_finetune": "The person opens the bag."},
            "1": {"image_0": "clip-a/1/pre_00100.jpg", "image_1": "clip-a/1/pnr_00120.jpg",
                  "action": "#C C cuts the tomato with the knife", "llava_forecast_finetune": "Cuts it."},
            "2": {"image_0": "clip-a/2/pre.jpg", "image_1": "clip-a/2/missing.jpg", "action": "#C C takes cup"},
        },
        "clip-b": {
            "0": {"image_0": "clip-b/0/pre.jpg", "image_1": "clip-b/0/broken.jpg", "action": "#C C washes hands"},
            "1": {"image_0": "clip-b/1/pre.jpg", "action": "#C C drops it"},  # no image_1
            "2": {"image_0": "clip-b/2/pre.jpg", "image_1": "clip-b/2/pnr.jpg", "action": "#C C"},  # empty label
        },
    }
    for clip in data.values():
        for k, row in enumerate(clip.values()):
            for key in ("image_0", "image_1"):
                if key in row and "missing" not in row[key] and "broken" not in row[key]:
                    _frame(os.path.join(frames, row[key]), 40 * k + (0 if key == "image_0" else 20))
    with open(os.path.join(frames, "clip-b/0/broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    annotations = os.path.join(root, "ego4d_val.json")
    with open(annotations, "w") as f:
        json.dump(data, f)
    return annotations, frames


def test_ego4d_labels_as_the_public_code_makes_them():
    assert ego4d_action("#C C opens a paper bag") == "open a paper bag"
    assert ego4d_action("#C C picks up the knife") == "pick up the knife"
    assert ego4d_action("#C C", lemmatize=str.lower) == ""
    assert split_of("x/ego4d_val.json") == "test" and split_of("epickitchen_train.json") == "train"
    with pytest.raises(InputError, match="named <dataset>_<train|val>.json"):
        split_of("ego4d.json")


def test_reader_records_and_skips(tmp_path):
    annotations, frames = make_lego_dataset(str(tmp_path))
    records, skips = read_lego(annotations, frames)
    assert [r.id for r in records] == ["clip-a_0", "clip-a_1", "clip-a_2", "clip-b_0"]
    first = records[0]
    assert (first.action, first.verb, first.noun) == ("open a paper bag", "open", "a paper bag")
    assert first.description == "The person opens the bag." and first.split == "test"
    assert first.extra["input_src"] == os.path.join(os.path.abspath(frames), "clip-a/0/pre_00012.jpg")
    assert {s.id: s.reason for s in skips} == {
        "clip-b_1": "missing image_0 or image_1", "clip-b_2": "empty action after removing the narration prefix ('#C C')"}


def test_curate_lego_references_frames_in_place(tmp_path, capsys):
    from egoframe.cli.main import main
    from egoframe.data.dataset import FramePairDataset

    annotations, frames = make_lego_dataset(str(tmp_path))
    out = tmp_path / "data"
    args = ["data", "curate", "--format", "lego", "--annotations", annotations, "--videos", frames, "--out",
            str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    assert "2 pairs kept of 2 curated (0 train / 2 test); 4 skipped" in capsys.readouterr().out
    records = load_records(str(out))
    assert [r.action for r in records] == ["open a paper bag", "cut the tomato with the knife"]
    assert all(os.path.isabs(r.input_path) and r.input_path.startswith(frames) for r in records)
    assert (records[0].width, records[0].height) == (64, 48)
    assert not (out / "shards").exists()  # nothing copied
    report = json.loads((out / "report.json").read_text())
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert reasons["clip-a_2"].startswith("missing target frame") and reasons["clip-b_0"].startswith("unreadable")
    item = FramePairDataset(str(out), resolution=32, split="test")[0]
    assert tuple(item["input"].shape) == (3, 32, 32) and item["input"].min() >= -1
    # A rerun resumes (every unit journalled) and gives the same pairs.
    with pytest.raises(SystemExit):
        main(args)
    assert [r.id for r in load_records(str(out))] == [r.id for r in records]


def test_curate_lego_bad_input_is_one_line(tmp_path, capsys):
    from egoframe.cli.main import main

    bad = tmp_path / "ego4d_val.json"
    bad.write_text("[1, 2")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "curate", "--format", "lego", "--annotations", str(bad), "--videos", str(tmp_path), "--out",
              str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "not a readable JSON file" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "curate", "--format", "lego", "--annotations", str(bad), "--out", str(tmp_path / "o2")])
    assert exit_info.value.code == 2 and "needs --videos" in capsys.readouterr().err


def test_released_features_are_referenced_and_memory_mapped(tmp_path, capsys):
    import torch

    from egoframe.cli.main import main
    from egoframe.training.data import PairSource
    from egoframe.vllm.cache import VllmEmbeddingCache, released_feature_path

    annotations, frames = make_lego_dataset(str(tmp_path))
    out = tmp_path / "data"
    with pytest.raises(SystemExit):
        main(["data", "curate", "--format", "lego", "--annotations", annotations, "--videos", frames,
              "--out", str(out), "--no-progress"])
    records = load_records(str(out))
    image_dir, text_dir = tmp_path / "feat_img", tmp_path / "feat_txt"
    d = 12
    for k, rec in enumerate(records):
        img_path = released_feature_path(str(image_dir), rec.extra["image_0"])
        txt_path = released_feature_path(str(text_dir), rec.extra["image_0"])
        assert img_path.endswith(".npy") and "pre_" in img_path
        os.makedirs(os.path.dirname(img_path), exist_ok=True)
        os.makedirs(os.path.dirname(txt_path), exist_ok=True)
        np.save(img_path, np.full((4, d), k + 1, np.float16))
        np.save(txt_path, np.arange((90 if k == 0 else 5) * d, dtype=np.float32).reshape(-1, d))
    with pytest.raises(SystemExit) as exit_info:
        main(["vllm", "import-features", str(out), "--image-features", str(image_dir), "--text-features",
              str(text_dir), "--quiet"])
    assert exit_info.value.code == 0
    assert "2 pairs with features (d_llm 12, 4 image tokens), 0 without" in capsys.readouterr().out
    cache = VllmEmbeddingCache(str(out / "vllm_embeddings"))
    emb = cache.get_many([r.id for r in records])
    assert tuple(emb.image_tokens.shape) == (2, 4, d) and emb.image_tokens.dtype == torch.float32
    assert tuple(emb.text_tokens.shape) == (2, 77, d)  # 90 tokens truncated, 5 padded with zeros
    assert emb.text_tokens[1, 5:].abs().sum() == 0 and emb.text_mask.sum() == 2 * 77
    assert emb.description[0] == "The person opens the bag."
    source = PairSource(str(out), "test", resolution=32, vllm_cache=str(out / "vllm_embeddings"), need_vllm=True)
    assert tuple(source.vllm([0, 1]).image_tokens.shape) == (2, 4, d)
    # A pickled object array never loads (np.load with allow_pickle=False refuses it) and a missing file is
    # reported: each such pair is left out; with none left, a one-line error.
    np.save(released_feature_path(str(text_dir), records[1].extra["image_0"]), np.array([{"x": 1}], dtype=object),
            allow_pickle=True)
    os.remove(released_feature_path(str(image_dir), records[0].extra["image_0"]))
    with pytest.raises(SystemExit) as exit_info:
        main(["vllm", "import-features", str(out), "--image-features", str(image_dir), "--text-features",
              str(text_dir), "--out", str(tmp_path / "c2"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no VLLM features found" in err
