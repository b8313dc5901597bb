"""The embedded world: determinism, real annotation layouts, frame timing, fidelity, ambiguity, cues, resume."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from egoframe.data.records import load_records
from egoframe.errors import ConfigError, EgoframeError, InputError
from egoframe.world import WorldConfig, WorldManifest, load_states, make_world, render_state
from egoframe.world.annotate import EPIC_COLUMNS
from egoframe.world.simulate import plan_video, play
from egoframe.world.video import read_frames

SMALL = dict(n_videos=3, seed=7, resolution=64, fps=30, min_actions=3, max_actions=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> WorldManifest:
    return make_world(str(tmp_path_factory.mktemp("world")), workers=1, progress=False, **SMALL)


def _tree_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _epic_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    # a second run, in parallel workers this time, must give byte-identical files (videos included)
    again = make_world(str(tmp_path / "again"), workers=2, progress=False, **SMALL)
    first, second = _tree_bytes(world.root), _tree_bytes(again.root)
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert different == []
    other = plan_video(WorldConfig(**{**SMALL, "seed": 8}).validate(), 0)
    assert [a.label for a in other.actions] != [a.label for a in plan_video(world.config, 0).actions] or \
        other.objects != plan_video(world.config, 0).objects


def test_manifest_layout_and_split(world):
    loaded = WorldManifest.load(world.root)
    assert loaded.config == world.config
    assert len(loaded.videos) == 3
    splits = {v["split"] for v in loaded.videos}
    assert splits == {"train", "test"}  # split by video, both non-empty
    for v in loaded.videos:
        assert os.path.exists(loaded.path(v["video_path"])) and v["video_path"].endswith(".MP4")
        assert os.path.exists(loaded.path(v["states_path"]))
    assert WorldConfig.load(world.root) == world.config


def test_epic_csv_columns_and_lego_timing(world):
    truth = {r.id: r for r in load_records(world.path(world.files["ground_truth"]))}
    rows = []
    for key in ("epic_train", "epic_validation"):
        with open(world.path(world.files[key]), newline="") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames) == EPIC_COLUMNS
            rows += list(reader)
    assert {r["narration_id"] for r in rows} == set(truth)
    split_of = {v["video_id"]: v["split"] for v in world.videos}
    fps = world.config.fps
    for row in rows:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d", row["start_timestamp"])
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d", row["stop_timestamp"])
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", row["narration_timestamp"])
        assert row["narration"] == f"{row['verb']} {row['noun']}"
        assert eval(row["all_nouns"]) == [row["noun"]] and eval(row["all_noun_classes"]) == [int(row["noun_class"])]
        gt = truth[row["narration_id"]]
        assert gt.split == split_of[row["video_id"]]
        start, stop = _epic_seconds(row["start_timestamp"]), _epic_seconds(row["stop_timestamp"])
        t_in = start - 0.25
        t_out = start + 0.6 * (stop - start)
        # both conventions a reader may use (floor or round of t * fps) must hit the world's true frames
        assert math.floor(t_in * fps) == round(t_in * fps) == gt.input_frame, row
        assert math.floor(t_out * fps) == round(t_out * fps) == gt.target_frame, row
        assert int(row["start_frame"]) == math.floor(start * fps) + 1  # 1-based like EPIC
        assert gt.target_frame - gt.input_frame == 15  # PRE-15 at 30 fps


def test_ego4d_fho_layout_matches_ground_truth(world):
    with open(world.path(world.files["fho"])) as f:
        fho = json.load(f)
    truth = {r.id: r for r in load_records(world.path(world.files["ground_truth"]))}
    seen = 0
    res = world.config.resolution
    for video in fho["videos"]:
        for interval in video["annotated_intervals"]:
            for action in interval["narrated_actions"]:
                gt = truth[action["uid"]]
                assert action["narration_text"].startswith("#C C ")
                by_type = {fr["frame_type"]: fr for fr in action["frames"]}
                assert {"pre_45", "pre_30", "pre_15", "pnr_frame", "post_frame"} <= set(by_type)
                assert by_type["pre_15"]["frame_number"] == gt.input_frame
                assert by_type["pnr_frame"]["frame_number"] == gt.target_frame
                assert action["critical_frames"]["pnr_frame"] == gt.target_frame
                assert action["start_sec"] <= gt.input_time < gt.target_time <= action["end_sec"]
                for fr in action["frames"]:
                    for box in fr["boxes"]:
                        assert box["object_type"] in {"left_hand", "right_hand", "object_of_change", "tool",
                                                      "destination"}
                        b = box["bbox"]
                        assert set(b) == {"x", "y", "width", "height"}
                        assert 0 <= b["x"] and b["x"] + b["width"] <= res + 1e-6 and b["width"] >= 1
                pnr_types = {b["object_type"]: b for b in by_type["pnr_frame"]["boxes"]}
                assert pnr_types["object_of_change"]["structured_noun"] == gt.extra["object_name"]
                if gt.verb in ("put", "pour"):
                    assert "destination" in pnr_types
                if gt.verb == "cut":
                    assert pnr_types["tool"]["structured_noun"] == "knife"
                seen += 1
    assert seen == len(truth) > 0


def test_decoded_frames_close_to_rendered_states(world):
    truth = load_records(world.path(world.files["ground_truth"]))
    video = world.videos[0]
    frames = read_frames(world.path(video["video_path"]))
    states = load_states(world.path(video["states_path"]))
    assert len(frames) == len(states) == video["n_frames"]
    assert [s.frame for s in states] == list(range(len(states)))
    for rec in (r for r in truth if r.video_id == video["video_id"]):
        for idx in (rec.input_frame, rec.target_frame):
            rendered = render_state(states[idx].to_dict(), world.config.resolution)  # via the JSON form
            assert frames[idx].shape == rendered.shape == (64, 64, 3)
            assert _psnr(frames[idx], rendered) > 27.0
        # and the PNR frame is not simply the input frame again
        assert _psnr(frames[rec.input_frame], frames[rec.target_frame]) < 40.0


def test_states_show_each_action_at_its_pnr(world):
    truth = load_records(world.path(world.files["ground_truth"]))
    states = {v["video_id"]: load_states(world.path(v["states_path"])) for v in world.videos}
    for rec in truth:
        seq = states[rec.video_id]
        before, at = seq[rec.input_frame], seq[rec.target_frame]
        oid, hand = rec.extra["object_id"], rec.extra["hand"]
        for s in (before, at):  # hands and held objects agree in every state
            for side, h in s.hands.items():
                held = [o.id for o in s.objects if o.held_by == side]
                assert held == ([h.holding] if h.holding else [])
        obj_before, obj_at = before.object(oid), at.object(oid)
        if rec.verb == "take":
            assert obj_before.held_by is None and obj_at.held_by == hand
        elif rec.verb == "put":
            assert obj_before.held_by == hand and obj_at.held_by is None
            dest = rec.extra["destination"]
            assert (obj_at.x, obj_at.y) == pytest.approx((dest["x"], dest["y"]), abs=1e-5)
        elif rec.verb == "pour":
            assert obj_before.filled and not obj_at.filled
            assert at.object(rec.extra["destination"]["place"]).fill == 1.0
        elif rec.verb == "cut":
            assert not obj_before.cut and obj_at.cut and at.object("knife_0").held_by == hand
        elif rec.verb in ("open", "close"):
            assert obj_at.open == (1.0 if rec.verb == "open" else 0.0) != obj_before.open
        else:
            assert obj_at.on == (rec.verb == "turn-on") != obj_before.on


def test_labels_are_ambiguous_and_cues_are_noisy():
    config = WorldConfig(n_videos=40, seed=3).validate()
    plans = [plan_video(config, i) for i in range(40)]
    actions = [a for p in plans for a in p.actions]
    ambiguous = sum(len(a.candidates) > 1 for a in actions) / len(actions)
    assert ambiguous >= 0.7, ambiguous
    takes = [a for a in actions if a.label == "take cup"]
    assert takes and sum(len({c["object"] for c in a.candidates}) > 1 for a in takes) / len(takes) >= 0.8
    cues = {c: sum(a.cue == c for a in actions) for c in ("strong", "weak", "misleading")}
    assert cues["strong"] > cues["weak"] > 0 and cues["misleading"] > 0, cues

    # the cue itself: at PRE-15 a strong-cue acting hand has covered part of the way to where it goes,
    # a weak or misleading one has hardly moved
    progress = {"strong": [], "weak": [], "misleading": []}
    for plan in plans[:12]:
        states = play(config, plan)
        for a in plan.actions:
            s0, s15 = states[a.start], states[a.pnr - config.pre_frames]
            goal = states[a.contact].hands[a.hand]
            d0 = math.hypot(s0.hands[a.hand].x - goal.x, s0.hands[a.hand].y - goal.y)
            d15 = math.hypot(s15.hands[a.hand].x - goal.x, s15.hands[a.hand].y - goal.y)
            if d0 > 0.05:
                progress[a.cue].append(1 - d15 / d0)
    assert np.mean(progress["strong"]) > 0.2 and np.mean(progress["weak"]) < 0.05, progress


def test_resume_after_kill_gives_identical_world(world, tmp_path):
    out = tmp_path / "killed"
    # the child kills itself (SIGKILL, no cleanup) right after its second video is done
    script = textwrap.dedent(f"""
        import os, signal
        from egoframe.world import make_world
        done = []
        def on_video(vid):
            done.append(vid)
            if len(done) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        make_world({str(out)!r}, workers=1, progress=False, on_video=on_video, **{SMALL!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert len(os.listdir(out / "parts")) == 2 and not (out / "manifest.json").exists()
    # a half-written temp file, as a kill during encoding leaves behind, must not disturb the rerun
    (out / "P01" / "videos" / "P01_03.MP4.tmp-123").write_bytes(b"partial")
    make_world(str(out), workers=1, progress=False, **SMALL)
    (out / "P01" / "videos" / "P01_03.MP4.tmp-123").unlink()
    assert _tree_bytes(str(out)) == _tree_bytes(world.root)

    # a video whose part file is gone is made again, the same
    os.remove(out / "parts" / "P01_01.json")
    make_world(str(out), workers=1, progress=False, **SMALL)
    assert _tree_bytes(str(out)) == _tree_bytes(world.root)


def test_bad_input_is_a_one_line_user_error(world, tmp_path):
    with pytest.raises(InputError, match="different config"):
        make_world(world.root, progress=False, **{**SMALL, "seed": 99})
    with pytest.raises(ConfigError, match="fps"):
        make_world(str(tmp_path / "x"), progress=False, **{**SMALL, "fps": 60})
    with pytest.raises(ConfigError, match="resolution"):
        WorldConfig(resolution=65).validate()
    with pytest.raises(InputError, match="no world"):
        WorldManifest.load(str(tmp_path))


def test_cli_world_make(tmp_path):
    import typer
    from typer.testing import CliRunner

    from egoframe.cli.world import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer from collapsing the group
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["world", "make", "--videos", "2", "--out", str(out), "--resolution", "32",
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "2 videos" in result.output
    assert WorldManifest.load(str(out)).config.resolution == 32
    bad = CliRunner().invoke(app, ["world", "make", "--videos", "1", "--out", str(tmp_path / "b"), "--fps", "90"])
    assert isinstance(bad.exception, EgoframeError)  # main() turns it into "error: ..." and exit code 2


def test_label_ambiguity_from_the_annotation(world):
    from egoframe.world.facts import WorldStates, label_ambiguity

    states = WorldStates(world.root)
    video = world.videos[0]
    with open(world.path(f"parts/{video['video_id']}.json")) as fh:
        first = json.load(fh)["actions"][0]
    assert states.action(video["video_id"], first["narration_id"])["label"] == first["label"]
    with pytest.raises(InputError, match="not in video"):
        states.action(video["video_id"], "no-such-action")
    one_cup = [{"object": "cup_0", "hand": "left", "destination": None}]
    assert label_ambiguity(one_cup) == {"object": False, "hand": False, "place": False}
    which_cup = one_cup + [{"object": "cup_1", "hand": "left", "destination": None}]
    assert label_ambiguity(which_cup)["object"] and not label_ambiguity(which_cup)["hand"]
    spots = [{"object": "cup_0", "hand": "left",
              "destination": {"place": "counter", "x": x, "y": 0.4, "name": "counter", "object_id": None}}
             for x in (0.2, 0.8)]
    assert label_ambiguity(spots) == {"object": False, "hand": False, "place": True}


def test_object_visibility_and_readable_facts(world):
    """A cup the held cup covers is not shown, so its place and fill are not readable; uncovered it is."""
    import dataclasses

    from egoframe.world.facts import HEADS, fact_objects, readable_facts
    from egoframe.world.render import object_visibility

    states = load_states(world.path(world.videos[0]["states_path"]))
    state = states[0]
    free = [o for o in state.objects if o.kind == "cup" and not o.held_by]
    assert len(free) >= 2, "the test needs two cups on the counter"
    below, other = free[0], free[1]
    shown = object_visibility(state)
    assert set(shown) == {o.id for o in state.objects} and all(0.0 <= v <= 1.0 for v in shown.values())
    # nothing covers a cup on the counter in the first frame (hands rest at the front edge)
    assert shown[below.id] > 0.9
    assert f"place_{below.colour}_cup" in readable_facts(state, shown)
    # the other cup, held by the left hand, drawn (enlarged) right over the first one
    hand = dataclasses.replace(state.hands["left"], x=below.x, y=below.y, holding=other.id)
    held = dataclasses.replace(other, x=below.x, y=below.y, held_by="left", place="hand")
    covered = dataclasses.replace(state, hands={**state.hands, "left": hand},
                                  objects=[held if o.id == other.id else o for o in state.objects])
    seen = object_visibility(covered)
    assert seen[below.id] < 0.2 and seen[other.id] > 0.9
    readable = readable_facts(covered, seen)
    assert f"place_{below.colour}_cup" not in readable and f"cup_{below.colour}" not in readable
    assert f"place_{other.colour}_cup" in readable and "left_hand" in readable and "frame" in readable
    assert fact_objects(covered, f"cup_{below.colour}") == [below.id]
    assert fact_objects(covered, "left_hand") == [] and set(readable) <= set(HEADS)


def _visibility_by_removal(state, resolution=64, changed=16):
    """Reference: the share of each object's area where the frame drawn without it differs by > ``changed``."""
    import dataclasses

    from egoframe.world.render import render_object_alpha, render_state

    full = render_state(state, resolution).astype(np.int16)
    out = {}
    for obj in state.objects:
        area = render_object_alpha(state, obj.id, resolution) > 0.5
        if not area.any():
            out[obj.id] = 0.0
            continue
        pouring = None if state.pouring and obj.id in state.pouring else state.pouring
        without = dataclasses.replace(state, objects=[o for o in state.objects if o.id != obj.id], pouring=pouring)
        shows = np.abs(full - render_state(without, resolution).astype(np.int16)).max(axis=-1) > changed
        out[obj.id] = float((shows & area).sum() / area.sum())
    return out


def test_object_visibility_agrees_with_drawing_without_the_object():
    """The id-buffer visibility equals the direct measure (draw the frame with and without each object) on
    stream frames of every kind (mid-action, held objects, pouring), up to anti-aliased rims."""
    import itertools

    from egoframe.world.facts import readable_facts
    from egoframe.world.render import object_visibility
    from egoframe.world.stream import stream_frames

    diffs, agree, total, partly = [], 0, 0, 0
    for item in itertools.islice(stream_frames(3, 64, frames_per_episode=10), 60):
        fast, slow = object_visibility(item.state), _visibility_by_removal(item.state)
        assert set(fast) == set(slow)
        diffs += [abs(fast[k] - slow[k]) for k in fast]
        partly += sum(0.05 < v < 0.95 for v in slow.values())
        a, b = set(readable_facts(item.state, fast)), set(readable_facts(item.state, slow))
        agree += 18 - len(a ^ b)
        total += 18
    assert partly >= 10, "the frames must include partly covered objects"
    assert np.mean(diffs) < 0.02 and np.quantile(diffs, 0.98) < 0.15
    assert agree / total > 0.98
    hidden = object_visibility(item.state, hidden_hands=("left", "right"))
    assert all(hidden[k] >= fast[k] - 1e-6 for k in fast)  # painting the arms out uncovers, never covers
