import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from egoframe.data.edit_formats import (
    load_source_images,
    read_ip2p_folders,
    read_ip2p_parquet,
    read_magicbrush,
    read_reason_edit,
)
from egoframe.data.ego4d import read_ego4d_fho
from egoframe.data.epic100 import estimate_fps, parse_timestamp, read_epic100
from egoframe.errors import InputError


def test_parse_timestamp_reads_fractions_as_decimals():
    assert parse_timestamp("00:00:01.02") == pytest.approx(1.02)
    assert parse_timestamp("00:00:00.950") == pytest.approx(0.95)  # 3 digits: not 9.5 s
    assert parse_timestamp("01:02:03.5") == pytest.approx(3723.5)
    for bad in ("00:00:xx.10", "1:2", "00:61:00.00"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_epic_reader_applies_lego_offsets_and_reports_malformed_rows(fixtures_dir):
    records, skips = read_epic100(str(fixtures_dir / "EPIC_100_train_sample.csv"))
    by_id = {r.id: r for r in records}
    first = by_id["P01_01_0"]
    assert first.input_time == pytest.approx(1.02 - 0.25)
    assert first.target_time == pytest.approx(1.02 + 0.6 * (3.00 - 1.02))
    assert (first.action, first.verb, first.noun, first.participant_id) == ("take cup", "take", "cup", "P01")
    assert by_id["P01_01_1"].extra["all_nouns"] == "['tap', 'water']"
    reasons = {s.id: s.reason for s in skips}
    assert set(reasons) == {"P01_01_3", "P01_01_4", "P01_01_5"}
    assert "line 5" in reasons["P01_01_3"] and "timestamp" in reasons["P01_01_3"]
    assert "5 fields, header has 15" in reasons["P01_01_4"]
    assert "before start" in reasons["P01_01_5"]
    # The constants are configurable.
    custom, _ = read_epic100(str(fixtures_dir / "EPIC_100_train_sample.csv"), input_offset_s=0.5, target_fraction=1.0)
    assert custom[0].input_time == pytest.approx(0.52) and custom[0].target_time == pytest.approx(3.0)


def test_epic_reader_rejects_a_file_without_epic_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks EPIC-100 columns"):
        read_epic100(str(path))


def test_epic_fps_estimate_from_frame_columns(fixtures_dir):
    records, _ = read_epic100(str(fixtures_dir / "EPIC_100_train_sample.csv"))
    fps = estimate_fps(records)
    assert fps["P01_01"] == pytest.approx(10.0, abs=0.2)


def test_ego4d_reader_takes_pre15_and_pnr_with_boxes(fixtures_dir):
    records, skips = read_ego4d_fho(str(fixtures_dir / "fho_main_sample.json"))
    first = records[0]
    assert (first.input_frame, first.target_frame) == (20, 35)
    assert (first.verb, first.noun, first.action) == ("take", "cup", "take cup")
    assert first.narration == "#C C picks a cup from the table"
    roles = {(b.frame, b.role, b.label) for b in first.boxes}
    assert ("input", "left_hand", "left_hand") in roles and ("pnr", "object_of_change", "cup") in roles
    assert ("pnr", "tool", "knife") in roles
    cup = next(b for b in first.boxes if b.frame == "pnr" and b.label == "cup")
    assert (cup.x0, cup.y0, cup.x1, cup.y1) == (30, 20, 40, 30)
    reasons = [s.reason for s in skips]
    assert any("rejected" in r for r in reasons)
    assert any("no pre_15 frame" in r for r in reasons)
    # Boxes and frame ranges are checked against the video at curation time, so these are still records.
    assert len(records) == 4


def test_ego4d_reader_rejects_non_fho_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"clips": []}))
    with pytest.raises(InputError, match="videos"):
        read_ego4d_fho(str(path))


def _png(color, size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_ip2p_clip_filtered_folders(tmp_path):
    folder = tmp_path / "shard-00" / "0000001"
    folder.mkdir(parents=True)
    (folder / "prompt.json").write_text(json.dumps(
        {"input": "a photo of a cat", "edit": "make it a dog", "output": "a photo of a dog"}))
    for seed in ("111", "222"):
        Image.new("RGB", (16, 16), "red").save(folder / f"{seed}_0.jpg")
    Image.new("RGB", (16, 16), "blue").save(folder / "111_1.jpg")  # seed 222 lacks its edited image
    broken = tmp_path / "shard-00" / "0000002"
    broken.mkdir()
    (broken / "prompt.json").write_text("{not json")
    records, skips = read_ip2p_folders(str(tmp_path))
    assert [(r.id, r.action, r.narration, r.source) for r in records] == [
        ("shard-00_0000001_111", "make it a dog", "a photo of a cat", "ip2p")]
    assert {s.id for s in skips} == {"shard-00_0000001_222", "shard-00_0000002"}
    images = load_source_images(records)[records[0].id]
    assert images["input"].shape == (16, 16, 3) and images["target"][0, 0, 2] > 200


def test_ip2p_hf_parquet(tmp_path):
    table = pa.table({"input_image": [{"bytes": _png("red"), "path": None}, {"bytes": _png("green"), "path": None}],
                      "edit_prompt": ["turn it blue", ""],
                      "edited_image": [{"bytes": _png("blue"), "path": None}, {"bytes": _png("blue"), "path": None}]})
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet", row_group_size=1)
    records, skips = read_ip2p_parquet(str(tmp_path))
    assert [r.action for r in records] == ["turn it blue"] and skips[0].reason == "empty edit_prompt"
    images = load_source_images(records)[records[0].id]
    assert tuple(images["input"][0, 0]) == (255, 0, 0) and tuple(images["target"][0, 0]) == (0, 0, 255)


def test_magicbrush_parquet(tmp_path):
    rows = {"img_id": ["327726", "327726", "4000"], "turn_index": [1, 2, 1],
            "source_img": [{"bytes": _png("red"), "path": "a.png"}] * 3,
            "mask_img": [{"bytes": _png("white"), "path": "m.png"}] * 3,
            "instruction": ["add a hat", "make the hat red", "remove the car"],
            "target_img": [{"bytes": _png("blue"), "path": "b.png"}] * 3}
    pq.write_table(pa.table(rows), tmp_path / "dev-00000.parquet")
    records, skips = read_magicbrush(str(tmp_path / "dev-00000.parquet"))
    assert [(r.id, r.video_id, r.action) for r in records] == [
        ("327726_1", "327726", "add a hat"), ("327726_2", "327726", "make the hat red"), ("4000_1", "4000", "remove the car")]
    assert not skips
    images = load_source_images(records[1:2])["327726_2"]
    assert images["mask"].ndim == 2 and images["target"].shape == (24, 32, 3)


def test_reason_edit_folders_pair_lines_with_sorted_images(tmp_path):
    category = tmp_path / "1-Left-Right"
    category.mkdir()
    for stem in ("1", "2"):
        Image.new("RGB", (20, 20), "gray").save(category / f"{stem}.png")
        Image.new("L", (20, 20), 255).save(category / f"{stem}_mask.jpg")
    (category / "Left_Right_text.txt").write_text(
        "Remove the cup on the left CLIP: a table\nMake the right apple green CLIP: a green apple\n")
    records, skips = read_reason_edit(str(tmp_path))
    assert [(r.id, r.action, r.extra["clip_phrase"]) for r in records] == [
        ("1-Left-Right_1", "Remove the cup on the left", "a table"),
        ("1-Left-Right_2", "Make the right apple green", "a green apple")]
    assert records[0].extra["mask_src"].endswith("1_mask.jpg") and not skips


def test_ego4d_reader_follows_the_official_flags_and_nulls(tmp_path):
    def action(uid, **kw):
        base = {"uid": uid, "structured_verb": "take_(pick,_grab,_get)", "structured_noun": "cup_(mug)",
                "narration_text": "#C C picks a cup", "is_valid_action": True, "is_rejected": False,
                "is_invalid_annotation": False, "stage": 2,
                "frames": [{"frame_type": "pre_15", "frame_number": 10, "boxes": []},
                           {"frame_type": "pnr_frame", "frame_number": 25, "boxes": []}],
                "critical_frames": {"pre_15": {"frame": 10}, "pnr_frame": {"frame": 25}, "contact_frame": None}}
        return {**base, **kw}

    actions = [
        action("ok"),
        action("invalid", is_invalid_annotation=True),
        action("stage-null", stage=None),
        action("frames-null", frames=None),
        action("both-null", frames=None, critical_frames=None),
        action("pnr-null", frames=None, critical_frames={"pre_15": {"frame": 10}, "pnr_frame": None}),
        action("contact-null", frames=None, critical_frames={"pre_15": {"frame": 3}, "pnr_frame": {"frame": 9},
                                                             "contact_frame": None}),
    ]
    path = tmp_path / "fho_main.json"
    path.write_text(json.dumps({"videos": [{"video_uid": "v", "video_metadata": {"fps": 30},
                                            "annotated_intervals": [{"narrated_actions": actions}]}]}))
    records, skips = read_ego4d_fho(str(path))
    by_id = {r.id: r for r in records}
    assert set(by_id) == {"ok", "stage-null", "frames-null", "contact-null"}
    assert (by_id["frames-null"].input_frame, by_id["frames-null"].target_frame) == (10, 25)
    assert (by_id["contact-null"].input_frame, by_id["contact-null"].target_frame) == (3, 9)
    reasons = {s.id: s.reason for s in skips}
    assert "is_invalid_annotation" in reasons["invalid"]
    assert "frames and critical_frames are null" in reasons["both-null"]
    assert "no pnr_frame frame" in reasons["pnr-null"]
