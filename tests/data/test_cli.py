import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from egoframe.data.records import load_records
from tests.data.conftest import make_video

pytestmark = pytest.mark.timeout(120)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "egoframe.cli.main", *map(str, args)],
                          capture_output=True, text=True, **kw)


def test_curate_filter_info_commands(fixtures_dir, epic_videos, tmp_path):
    out = tmp_path / "ds"
    result = _cli("data", "curate", "--format", "epic100", "--annotations", fixtures_dir / "EPIC_100_train_sample.csv",
                  "--videos", epic_videos, "--out", out, "--workers", "2", "--no-progress",
                  "--min-sim", "-1", "--max-sim", "1")
    assert result.returncode == 0, result.stderr
    assert "4 pairs kept of 4 curated" in result.stdout and "6 skipped" in result.stdout
    result = _cli("data", "filter", out, "--min-sim", "0.99")
    assert result.returncode == 0, result.stderr
    assert '"pairs_kept": 0' in result.stdout and load_records(str(out)) == []
    result = _cli("data", "info", out)
    assert result.returncode == 0 and '"unreadable video": 1' in result.stdout


def test_user_errors_are_one_line_and_exit_2(tmp_path, fixtures_dir):
    result = _cli("data", "curate", "--format", "epic99", "--annotations", fixtures_dir / "EPIC_100_train_sample.csv",
                  "--videos", tmp_path, "--out", tmp_path / "ds")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: unknown format 'epic99'")
    result = _cli("data", "curate", "--format", "ego4d", "--annotations", tmp_path / "missing.json",
                  "--videos", tmp_path, "--out", tmp_path / "ds2")
    assert result.returncode == 2 and "Ego4D FHO annotation JSON not found" in result.stderr
    result = _cli("data", "curate", "--format", "epic100", "--annotations", fixtures_dir / "EPIC_100_train_sample.csv",
                  "--videos", tmp_path, "--out", tmp_path / "ds3", "--scorer", "laion", "--no-progress")
    # Missing LAION weights is a user error, raised before any video is touched.
    assert result.returncode == 2 and "LAION aesthetic head not found" in result.stderr


def _many_videos(root, n_videos=8, actions=12):
    videos = root / "videos"
    rows = []
    for v in range(n_videos):
        video_id = f"P{v:02d}_01"
        make_video(videos / f"{video_id}.MP4", 120, fps=10, width=320, height=240, gop=30)
        for a in range(actions):
            start = 0.5 + a * 0.9
            ts = lambda t: f"00:00:{t:05.2f}"
            rows.append([f"{video_id}_{a}", f"P{v:02d}", video_id, ts(start), ts(start), ts(start + 0.8),
                         int(start * 10) + 1, int((start + 0.8) * 10) + 1, "take cup", "take", 0, "cup", 13,
                         "['cup']", "[13]"])
    csv_path = root / "EPIC_100_train.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                         "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                         "noun_class", "all_nouns", "all_noun_classes"])
        writer.writerows(rows)
    return csv_path, videos


def test_killed_run_resumes_without_redoing_or_losing_work(tmp_path):
    csv_path, videos = _many_videos(tmp_path)
    args = ["data", "curate", "--format", "epic100", "--annotations", csv_path, "--videos", videos,
            "--no-progress", "--no-filter"]
    out = tmp_path / "killed"
    done_dir = out / "work" / "done"
    proc = subprocess.Popen([sys.executable, "-m", "egoframe.cli.main", *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if done_dir.exists() and len(os.listdir(done_dir)) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p for p in os.listdir(done_dir) if p.endswith(".json"))
    assert 2 <= len(finished) < 8, "the kill must land mid-run"
    assert not (out / "pairs.parquet").exists()
    mtimes = {p: os.path.getmtime(done_dir / p) for p in finished}

    result = _cli(*args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert {p: os.path.getmtime(done_dir / p) for p in finished} == mtimes  # finished units not redone
    clean = tmp_path / "clean"
    assert _cli(*args, "--out", clean).returncode == 0
    resumed = load_records(str(out))
    assert len(resumed) == 8 * 12
    assert [r.to_dict() for r in resumed] == [r.to_dict() for r in load_records(str(clean))]
    leftovers = [f for _, _, files in os.walk(out) for f in files if ".tmp-" in f]
    assert leftovers == []
