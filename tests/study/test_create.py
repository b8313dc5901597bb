"""Generation-set reading, image cleaning, and the shape of each rater's shuffled tasks."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from egoframe.errors import EgoframeError, InputError
from egoframe.study import StudyConfig, create_study, db, read_generation_set

from .conftest import METHODS, make_generation_set


def _rewrite(root, edit):
    path = os.path.join(root, "samples.csv")
    rows = list(csv.DictReader(open(path)))
    header = list(rows[0])
    header, rows = edit(header, rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_reader_finds_methods_and_skips_extra_columns(generation_set):
    gen = read_generation_set(generation_set)
    assert gen.methods == list(METHODS)  # clip_score and split are not image columns
    assert len(gen.samples) == 6 and os.path.isabs(gen.samples[0].input)
    assert read_generation_set(generation_set, methods=["ip2p"]).methods == ["ip2p"]


@pytest.mark.parametrize("edit,message", [
    (lambda h, r: ([c for c in h if c != "action"], r), "missing column(s) action"),
    (lambda h, r: (h, [{**r[0], "lego": "frames/nope.png"}, *r[1:]]), "not found"),
    (lambda h, r: (h, [r[0], {**r[1], "sample_id": r[0]["sample_id"]}, *r[2:]]), "duplicate sample_id"),
    (lambda h, r: (h, [{**r[0], "action": ""}, *r[1:]]), "action is empty"),
    (lambda h, r: (h, [{**r[0], "action": "take\x07cup"}, *r[1:]]), "control character"),
    (lambda h, r: (h, [{**r[0], "action": "x" * 400}, *r[1:]]), "at most 300"),
    (lambda h, r: (h, []), "no samples"),
])
def test_reader_errors_name_the_problem(generation_set, edit, message):
    _rewrite(generation_set, edit)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_generation_set(generation_set)


def test_paths_outside_the_folder_only_for_local_sets(generation_set, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere.png")
    _rewrite(generation_set, lambda h, r: (h, [{**r[0], "input": "../elsewhere.png",
                                                "target": str(tmp_path / "elsewhere.png")}, *r[1:]]))
    gen = read_generation_set(generation_set)  # the evaluation writer's ../ paths to shared ground truth
    assert gen.samples[0].input == gen.samples[0].target == str(tmp_path / "elsewhere.png")
    with pytest.raises(InputError, match="outside the generation set"):
        read_generation_set(generation_set, confine=True)
    _rewrite(generation_set, lambda h, r: (h, [{**r[0], "input": "frames/s000/input.png"}, *r[1:]]))
    with pytest.raises(InputError, match="must be relative"):
        read_generation_set(generation_set, confine=True)


def test_reader_unknown_method_and_missing_file(generation_set, tmp_path):
    with pytest.raises(InputError, match="no column for method"):
        read_generation_set(generation_set, methods=["nope"])
    with pytest.raises(InputError, match="no samples.csv"):
        read_generation_set(tmp_path)


def test_clean_image_strips_metadata_and_bounds_size():
    from PIL import Image, PngImagePlugin

    from egoframe.study.images import clean_image

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "method: lego, steps 100")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, format="PNG", pnginfo=info)
    assert b"method: lego" in buf.getvalue()
    clean = clean_image(buf.getvalue())
    assert b"method: lego" not in clean.png and (clean.width, clean.height) == (8, 8)
    huge = io.BytesIO()
    Image.new("1", (5000, 10)).save(huge, format="PNG")
    with pytest.raises(InputError, match="5000x10"):
        clean_image(huge.getvalue())
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(InputError, match="GIF"):
        clean_image(gif.getvalue())
    with pytest.raises(InputError, match="not a readable image"):
        clean_image(b"\x89PNG\r\n\x1a\n garbage")


def _tasks(database, study="ego4d"):
    engine = db.make_engine(database)
    with db.sessions(engine)() as s:
        raters = s.scalars(select(db.Rater).join(db.Study).where(db.Study.name == study).options(
            selectinload(db.Rater.tasks).selectinload(db.Task.options).selectinload(db.TaskOption.method),
            selectinload(db.Rater.tasks).selectinload(db.Task.sample))).all()
        out = {r.label: [(t.sample.sample_key, t.is_check, [o.method.name if o.method else o.correct
                                                            for o in t.options]) for t in r.tasks] for r in raters}
    engine.dispose()
    return out


def test_each_rater_gets_own_shuffle_and_checks(study):
    database, _ = study
    tasks = _tasks(database)
    assert len(tasks) == 3
    orders = []
    for label, screens in tasks.items():
        normal = [t for t in screens if not t[1]]
        checks = [t for t in screens if t[1]]
        assert sorted(t[0] for t in normal) == [f"s{i:03d}" for i in range(6)]
        assert len(checks) == 2 and not screens[0][1]  # never starts with a check
        for _, _, options in checks:
            assert options.count(True) == 1 and len(options) == 3  # one target among input copies
        for _, _, options in normal:
            assert sorted(options) == sorted(METHODS)
        orders.append(tuple(t[0] for t in normal))
    assert len(set(orders)) > 1, "raters share one sample order"
    slots = Counter(t[2][0] for screens in tasks.values() for t in screens if not t[1])
    assert len(slots) == 3, "one method is always shown first"


def test_ratings_per_sample_balances_load(generation_set, tmp_path):
    database = str(tmp_path / "s.db")
    create_study(database, generation_set, StudyConfig(name="ego4d", raters=4, ratings_per_sample=2,
                                                       attention_checks=0))
    tasks = _tasks(database)
    per_sample = Counter(t[0] for screens in tasks.values() for t in screens)
    assert set(per_sample.values()) == {2} and len(per_sample) == 6
    assert sorted(len(s) for s in tasks.values()) == [3, 3, 3, 3]
    for screens in tasks.values():
        assert len({t[0] for t in screens}) == len(screens)  # no rater sees a sample twice


def test_pairwise_with_reference(generation_set, tmp_path):
    database = str(tmp_path / "s.db")
    create_study(database, generation_set, StudyConfig(name="ego4d", interface="pairwise", raters=2,
                                                       reference="lego", attention_checks=1))
    for screens in _tasks(database).values():
        normal = [t for t in screens if not t[1]]
        assert len(normal) == 6 * 2 and all("lego" in t[2] and len(t[2]) == 2 for t in normal)
        assert Counter(t[2][0] == "lego" for t in normal).keys() == {True, False}  # A/B both ways


@pytest.mark.parametrize("config,message", [
    (dict(interface="grid"), "interface must be"),
    (dict(raters=0), "at least one rater"),
    (dict(raters=2, ratings_per_sample=3), "ratings_per_sample"),
    (dict(raters=["a", "a"]), "duplicate rater label"),
    (dict(name="bad name"), "study name"),
    (dict(reference="nope", interface="pairwise"), "reference method"),
])
def test_bad_configs(generation_set, tmp_path, config, message):
    with pytest.raises(EgoframeError, match=message):
        create_study(str(tmp_path / "s.db"), generation_set, StudyConfig(**{"name": "x", **config}))


def test_checks_need_targets_and_names_are_unique(tmp_path):
    root = make_generation_set(str(tmp_path / "g"), n_samples=2, targets=False)
    with pytest.raises(InputError, match="ground-truth targets"):
        create_study(str(tmp_path / "s.db"), root, StudyConfig(name="x", attention_checks=1))
    create_study(str(tmp_path / "s.db"), root, StudyConfig(name="x", attention_checks=0))
    with pytest.raises(InputError, match="already exists"):
        create_study(str(tmp_path / "s.db"), root, StudyConfig(name="x", attention_checks=0))


def test_add_rater_takes_least_rated_samples(generation_set, tmp_path):
    from egoframe.study import add_rater

    database = str(tmp_path / "s.db")
    create_study(database, generation_set, StudyConfig(name="ego4d", raters=3, ratings_per_sample=1,
                                                       attention_checks=0))
    invite = add_rater(database, "ego4d", "late")
    assert len(invite.token) >= 40
    tasks = _tasks(database)
    assert len(tasks["late"]) == 2  # ceil(6 samples x 1 rating / 3 raters)
    with pytest.raises(InputError, match="already exists"):
        add_rater(database, "ego4d", "late")
    with pytest.raises(InputError, match="no study named"):
        add_rater(database, "nope", "x")


def test_a_field_over_the_csv_limit_is_an_input_error(generation_set, tmp_path, capsys):
    from egoframe.cli.main import main

    _rewrite(generation_set, lambda h, r: (h, [{**r[0], "description": "x" * (130 * 1024)}, *r[1:]]))
    with pytest.raises(InputError, match="not a readable CSV"):
        read_generation_set(generation_set)
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "create", generation_set, "--db", str(tmp_path / "s.db"), "--name", "big"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "not a readable CSV" in err
