import json
import os

import numpy as np
import pytest
from PIL import Image

from egoframe.data.curate import CurationConfig, apply_thresholds, curate
from egoframe.data.records import load_records
from egoframe.errors import InputError
from tests.data.conftest import decode_index, frame_image, make_video


def _epic_config(fixtures_dir, videos, out, **kw) -> CurationConfig:
    return CurationConfig(format="epic100", annotations=str(fixtures_dir / "EPIC_100_train_sample.csv"),
                          videos=str(videos), out=str(out), **kw)


def _stored_index(root, rel_path) -> int:
    return decode_index(np.asarray(Image.open(os.path.join(root, rel_path)).convert("RGB")))


def test_epic_video_curation_end_to_end(fixtures_dir, epic_videos, tmp_path):
    out = tmp_path / "ds"
    report = curate(_epic_config(fixtures_dir, epic_videos, out, filter_similarity=False))
    records = {r.id: r for r in load_records(str(out / "all_pairs.parquet"))}
    assert set(records) == {"P01_01_0", "P01_01_1", "P03_01_0", "P03_01_1"}
    nominal = {i: (r.extra["input_frame_nominal"], r.extra["target_frame_nominal"]) for i, r in records.items()}
    # start - 0.25 s and start + 0.6 (stop - start) at the video's 10 fps.
    assert nominal == {"P01_01_0": (8, 22), "P01_01_1": (43, 54), "P03_01_0": (18, 32), "P03_01_1": (58, 66)}
    # Frame 10 is the only sharp frame near 8: the aesthetic choice moves the input there.
    assert records["P01_01_0"].input_frame == 10
    for rec in records.values():
        assert abs(rec.input_frame - rec.extra["input_frame_nominal"]) <= 3
        assert abs(rec.target_frame - rec.extra["target_frame_nominal"]) <= 3
        # The stored images are the frames the record names (checks seeking end to end).
        assert _stored_index(out, rec.input_path) == rec.input_frame
        assert _stored_index(out, rec.target_path) == rec.target_frame
        assert rec.input_path.startswith("shards/00000/") and rec.fps == 10.0
        assert set(rec.scores) == {"aesthetic_input", "aesthetic_target", "similarity"}
        assert len(rec.extra["aesthetic_candidates_input"]) == 7 or rec.extra["input_frame_nominal"] < 3
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert "timestamp beyond video end" in reasons["P01_01_2"]
    assert "malformed CSV row" in reasons["P01_01_3"] and "malformed CSV row" in reasons["P01_01_4"]
    assert "before start" in reasons["P01_01_5"]
    assert "video not found" in reasons["P01_02_0"]
    assert "unreadable video" in reasons["P02_01_0"]
    assert report["counts"]["skipped"] == 6 and report["counts"]["pairs_curated"] == 4
    config = json.loads((out / "config.json").read_text())
    assert config["input_offset_s"] == 0.25 and config["target_fraction"] == 0.6


def test_splits_never_share_a_video(fixtures_dir, epic_videos, tmp_path):
    out = tmp_path / "ds"
    curate(_epic_config(fixtures_dir, epic_videos, out, filter_similarity=False, test_fraction=0.5))
    records = load_records(str(out))
    train = {r.video_id for r in records if r.split == "train"}
    test = {r.video_id for r in records if r.split == "test"}
    assert train and test and not train & test


def test_similarity_thresholds_reapply_from_stored_scores(fixtures_dir, epic_videos, tmp_path):
    out = tmp_path / "ds"
    curate(_epic_config(fixtures_dir, epic_videos, out))
    sims = sorted(r.scores["similarity"] for r in load_records(str(out / "all_pairs.parquet")))
    kept = load_records(str(out))
    assert all(0.81 <= r.scores["similarity"] <= 0.97 for r in kept)
    # A window around the two middle scores keeps exactly those, without touching a video.
    os.rename(str(out / "shards"), str(out / "shards-moved"))  # proves no frame is re-read
    counts = apply_thresholds(str(out), min_sim=sims[1] - 1e-9, max_sim=sims[2] + 1e-9)
    assert counts["pairs_kept"] == 2 and counts["filtered_too_similar"] == 1 and counts["filtered_too_different"] == 1
    assert sorted(r.scores["similarity"] for r in load_records(str(out))) == pytest.approx(sims[1:3])
    assert json.loads((out / "config.json").read_text())["min_sim"] == pytest.approx(sims[1] - 1e-9)


def test_rerun_skips_finished_units_and_refuses_other_settings(fixtures_dir, epic_videos, tmp_path):
    out = tmp_path / "ds"
    first = curate(_epic_config(fixtures_dir, epic_videos, out, filter_similarity=False))
    done = sorted(os.listdir(out / "work" / "done"))
    mtimes = [os.path.getmtime(out / "work" / "done" / d) for d in done]
    second = curate(_epic_config(fixtures_dir, epic_videos, out, filter_similarity=False))
    assert second["counts"]["units_resumed"] == second["counts"]["units"] == len(done)
    assert [os.path.getmtime(out / "work" / "done" / d) for d in done] == mtimes
    assert second["counts"]["pairs_curated"] == first["counts"]["pairs_curated"]
    with pytest.raises(InputError, match="target_fraction"):
        curate(_epic_config(fixtures_dir, epic_videos, out, target_fraction=0.5))


def test_parallel_workers_give_the_same_pairs(fixtures_dir, epic_videos, tmp_path):
    curate(_epic_config(fixtures_dir, epic_videos, tmp_path / "a", filter_similarity=False))
    curate(_epic_config(fixtures_dir, epic_videos, tmp_path / "b", filter_similarity=False, workers=2))
    a = load_records(str(tmp_path / "a" / "all_pairs.parquet"))
    b = load_records(str(tmp_path / "b" / "all_pairs.parquet"))
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]


def test_epic_frame_folders_with_a_missing_frame(fixtures_dir, tmp_path):
    # rgb_frames/P03/P03_01/frame_*.jpg (1-based) of 100 frames; file 66 (0-based frame 65) is missing.
    folder = tmp_path / "rgb_frames" / "P03" / "P03_01"
    folder.mkdir(parents=True)
    for index in range(100):
        if index != 65:
            Image.fromarray(frame_image(index)).save(folder / f"frame_{index + 1:010d}.jpg", quality=95)
    out = tmp_path / "ds"
    report = curate(CurationConfig(format="epic100", annotations=str(fixtures_dir / "EPIC_100_train_sample.csv"),
                                   frames=str(tmp_path / "rgb_frames"), frames_fps=10, out=str(out),
                                   filter_similarity=False, neighbours=0))
    records = {r.id: r for r in load_records(str(out))}
    assert list(records) == ["P03_01_0"]
    rec = records["P03_01_0"]
    # the dataset's rule at the rate given (10, the fixture's): file max(1, floor(t x 10)), 0-based one less;
    # input 2.04 - 0.25 = 1.79 s -> file 17, target 2.04 + 0.6 x 2 = 3.24 s -> file 32
    assert (rec.input_frame, rec.target_frame) == (16, 31)
    assert _stored_index(out, rec.target_path) == 31
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert reasons["P03_01_1"].startswith("missing frame 65")
    assert "frame folder not found" in reasons["P01_02_0"]


def test_ego4d_curation_with_box_checks(fixtures_dir, ego4d_videos, tmp_path):
    out = tmp_path / "ds"
    report = curate(CurationConfig(format="ego4d", annotations=str(fixtures_dir / "fho_main_sample.json"),
                                   videos=str(ego4d_videos), out=str(out), filter_similarity=False, neighbours=0))
    records = {r.id: r for r in load_records(str(out))}
    assert {(r.input_frame, r.target_frame) for r in records.values()} == {(20, 35), (40, 55)}
    for rec in records.values():
        assert _stored_index(out, rec.input_path) == rec.input_frame
        assert _stored_index(out, rec.target_path) == rec.target_frame
        assert all(0 <= b.x0 < b.x1 <= 64 and 0 <= b.y0 < b.y1 <= 48 for b in rec.boxes)
        assert rec.input_time == pytest.approx(rec.input_frame / 10)
    tool = next(b for r in records.values() for b in r.boxes if b.role == "tool")
    assert (tool.x0, tool.x1) == (40, 64)  # clipped at the frame edge, not dropped
    reasons = [s["reason"] for s in report["skipped"]]
    assert any(r.startswith("box outside the frame: tap") for r in reasons)
    assert any(r.startswith("timestamp beyond video end") for r in reasons)
    assert report["skipped_by_reason"]["box outside the frame"] == 1


def test_a_corrupt_video_tail_skips_only_the_frames_it_lost(tmp_path, fixtures_dir):
    videos = tmp_path / "videos"
    path = make_video(videos / "P03_01.MP4", 100, fps=10, faststart=True)
    data = bytearray(open(path, "rb").read())
    open(path, "wb").write(bytes(data[: int(len(data) * 0.55)]))  # truncated download
    out = tmp_path / "ds"
    report = curate(_epic_config(fixtures_dir, videos, out, filter_similarity=False, neighbours=0))
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    kept = {r.id for r in load_records(str(out))}
    assert "P03_01_0" in kept  # frames 18 and 32 are in the surviving part
    assert "P03_01_1" in reasons and ("missing frame" in reasons["P03_01_1"] or "beyond" in reasons["P03_01_1"])


def test_epic_frame_folders_follow_the_datasets_own_numbering(tmp_path):
    """Rows written as the public CSVs write them (2- and 3-decimal stamps, an empty narration_timestamp,
    quoted Python-list columns); the published frame for time t is frame_%010d.jpg numbered max(1, floor(t F)),
    F = 60 for PXX_YY and 50 for PXX_1YY videos, whatever the video's own fps."""
    csv_path = tmp_path / "EPIC_100_train.csv"
    csv_path.write_text(
        "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,"
        "stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n"
        'P05_01_0,P05,P05_01,00:00:01.900,00:00:02.13,00:00:03.50,127,210,take cup,take,0,cup,13,"[\'cup\']",[13]\n'
        'P05_101_0,P05,P05_101,,00:00:01.500,00:00:02.500,75,125,open tap,open,3,tap,0,"[\'tap\', \'water\']","[0, 27]"\n')
    for video, count in (("P05_01", 200), ("P05_101", 130)):
        folder = tmp_path / "rgb_frames" / "P05" / video
        folder.mkdir(parents=True)
        for index in range(count):
            Image.fromarray(frame_image(index)).save(folder / f"frame_{index + 1:010d}.jpg", quality=95)
    out = tmp_path / "ds"
    curate(CurationConfig(format="epic100", annotations=str(csv_path), frames=str(tmp_path / "rgb_frames"),
                          out=str(out), filter_similarity=False, neighbours=0))
    records = {r.id: r for r in load_records(str(out))}
    # P05_01 (F = 60): input 2.13 - 0.25 = 1.88 s -> file 112; target 2.13 + 0.6 x 1.37 = 2.952 s -> file 177
    # P05_101 (F = 50): input 1.25 s -> file 62; target 2.1 s -> file 105 (0-based indices one less)
    assert (records["P05_01_0"].input_frame, records["P05_01_0"].target_frame) == (111, 176)
    assert (records["P05_101_0"].input_frame, records["P05_101_0"].target_frame) == (61, 104)
    assert _stored_index(out, records["P05_101_0"].target_path) == 104
    assert records["P05_01_0"].fps == 60 and records["P05_101_0"].fps == 50
