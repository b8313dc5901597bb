import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from egoframe.data.curate import CurationConfig, curate
from egoframe.data.dataset import FramePairDataset, collate_pairs, to_hf_dataset
from egoframe.data.records import load_records
from egoframe.errors import InputError


@pytest.fixture(scope="module")
def ego4d_set(fixtures_dir_module, ego4d_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ego4d-set") / "ds"
    curate(CurationConfig(format="ego4d", annotations=str(fixtures_dir_module / "fho_main_sample.json"),
                          videos=str(ego4d_videos), out=str(out), filter_similarity=False, test_fraction=0.0))
    return out


@pytest.fixture(scope="module")
def fixtures_dir_module():
    from tests.data.conftest import FIXTURES

    return FIXTURES


def test_torch_dataset_items_are_in_minus_one_to_one(ego4d_set):
    import torch

    ds = FramePairDataset(str(ego4d_set), resolution=32, split="train")
    assert len(ds) == 2
    item = ds[0]
    assert item["input"].shape == (3, 32, 32) and item["target"].shape == (3, 32, 32)
    assert item["input"].min() >= -1.0 and item["input"].max() <= 1.0 and item["input"].min() < -0.9
    assert item["action"] == "take cup"
    cup = next(b for b in item["boxes"] if b["label"] == "cup" and b["frame"] == "pnr")
    assert cup["box"] == pytest.approx((30 / 64, 20 / 48, 40 / 64, 30 / 48))
    batch = collate_pairs([ds[0], ds[1]])
    assert batch["input"].shape == (2, 3, 32, 32) and len(batch["boxes"]) == 2
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_pairs)
    assert next(iter(loader))["target"].shape == (2, 3, 32, 32)


def test_flip_mirrors_images_and_swaps_hands(ego4d_set):
    plain = FramePairDataset(str(ego4d_set), resolution=32)[0]
    flipped_ds = FramePairDataset(str(ego4d_set), resolution=32, flip=True, seed=0)
    item = next(x for x in (flipped_ds[0] for _ in range(20)) if x["flipped"])
    assert (item["input"] == plain["input"].flip(-1)).all()
    left = next(b for b in plain["boxes"] if b["role"] == "left_hand" and b["frame"] == "input")
    mirrored = next(b for b in item["boxes"] if b["role"] == "right_hand" and b["frame"] == "input"
                    and b["box"][1] == left["box"][1])
    assert mirrored["box"][0] == pytest.approx(1 - left["box"][2])


def test_test_split_is_empty_when_no_video_is_held_out_and_bad_split_is_an_error(ego4d_set):
    assert len(FramePairDataset(str(ego4d_set), split="test")) == 0
    with pytest.raises(InputError, match="split"):
        FramePairDataset(str(ego4d_set), split="val")


def test_hf_datasets_export(ego4d_set):
    hf = to_hf_dataset(str(ego4d_set))
    assert len(hf) == 2 and set(hf["action"]) == {"take cup", "take knife"}
    assert hf[0]["input_image"].size == (64, 48)


def test_edit_data_sets_curate_into_the_same_layout(tmp_path):
    def png(color):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), color).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    pq.write_table(pa.table({"img_id": ["1", "1", "2"], "turn_index": [1, 2, 1],
                             "source_img": [png("red")] * 3, "mask_img": [png("white")] * 3,
                             "instruction": ["add a hat", "make it red", "remove the car"],
                             "target_img": [png("blue"), png("blue"), {"bytes": b"broken", "path": None}]}),
                   tmp_path / "mb.parquet")
    out = tmp_path / "ds"
    report = curate(CurationConfig(format="magicbrush", annotations=str(tmp_path / "mb.parquet"), out=str(out),
                                   test_fraction=0.5))
    records = load_records(str(out))
    assert sorted(r.id for r in records) == ["1_1", "1_2"]  # the broken target is reported, not fatal
    assert report["skipped"] == [{"id": "2_1", "reason": "missing or unreadable target image", "stage": "frames"}]
    assert all(r.extra["mask_path"].endswith("_mask.png") for r in records)
    assert len({r.split for r in records}) == 1  # both turns of image 1 stay together
    ds = FramePairDataset(str(out), resolution=16, split=None)
    assert ds[0]["action"] in {"add a hat", "make it red"} and ds[0]["target"][2].mean() > 0.9


def test_reason_edit_has_no_targets_and_says_so(tmp_path):
    category = tmp_path / "re" / "3-Mirror"
    category.mkdir(parents=True)
    Image.new("RGB", (20, 20), "gray").save(category / "1.png")
    Image.new("L", (20, 20), 255).save(category / "1_mask.jpg")
    (category / "Mirror_text.txt").write_text("Remove the reflected cup CLIP: a mirror\n")
    out = tmp_path / "ds"
    curate(CurationConfig(format="reason-edit", annotations=str(tmp_path / "re"), out=str(out)))
    with pytest.raises(InputError, match="no target image"):
        FramePairDataset(str(out), split=None)
    item = FramePairDataset(str(out), split=None, require_target=False, resolution=8)[0]
    assert "target" not in item and item["action"] == "Remove the reflected cup"
    assert json.loads((out / "report.json").read_text())["counts"]["pairs_kept"] == 1
