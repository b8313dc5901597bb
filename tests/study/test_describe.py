"""The description study (papers/000 Fig. 11): input + target + one description, "Aligned" / "Not aligned";
results per description source with intervals, Fleiss' kappa and a paired comparison."""

from __future__ import annotations

import csv
import os

import pytest
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from egoframe.errors import InputError
from egoframe.study import StudyConfig, compute_results, create_study, db, paper_table, read_generation_set

from .conftest import csrf_of, make_generation_set


def make_description_set(root, n_samples: int = 6):
    """The drawn frames, plus two description sources as text columns: a right one and a hallucinating one."""
    make_generation_set(root, n_samples=n_samples, methods=())
    path = os.path.join(root, "samples.csv")
    rows = list(csv.DictReader(open(path)))
    for i, row in enumerate(rows):
        row["tuned"] = f"The right hand does '{row['action']}' with cup number {i} on the counter."
        row["offshelf"] = f"A purple elephant number {i} dances on a roof."
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def describe_study(tmp_path):
    root = make_description_set(str(tmp_path / "descset"))
    database = str(tmp_path / "describe.db")
    created = create_study(database, root, StudyConfig(name="desc", interface="describe", raters=5,
                                                       attention_checks=1, methods=["tuned", "offshelf"], seed=3))
    return database, created


def test_reader_reads_text_sources(tmp_path):
    root = make_description_set(str(tmp_path / "d"))
    gen = read_generation_set(root, methods=["tuned", "offshelf"], kind="texts")
    assert gen.methods == ["tuned", "offshelf"] and gen.samples[0].outputs == {}
    assert gen.samples[2].texts["offshelf"].startswith("A purple elephant number 2")
    assert read_generation_set(root, kind="texts").methods == ["description"]  # the default source
    with pytest.raises(InputError, match="kind must be one of"):
        read_generation_set(root, kind="videos")


def test_describe_needs_targets_and_two_actions(tmp_path):
    root = make_generation_set(str(tmp_path / "nt"), n_samples=2, methods=(), targets=False)
    with pytest.raises(InputError, match="target is empty"):
        create_study(str(tmp_path / "a.db"), root, StudyConfig(name="d", interface="describe", attention_checks=0))
    one = make_generation_set(str(tmp_path / "one"), n_samples=1, methods=())
    with pytest.raises(InputError, match="two different actions"):
        create_study(str(tmp_path / "b.db"), one, StudyConfig(name="d", interface="describe", attention_checks=1))


def _answers(database, token_label: str) -> dict[int, tuple[bool, str | None, str]]:
    """position -> (is_check, source, text), read from the database (the rater's page names no source)."""
    engine = db.make_engine(database)
    with db.sessions(engine)() as s:
        rater = s.scalar(select(db.Rater).where(db.Rater.label == token_label).options(
            selectinload(db.Rater.tasks).selectinload(db.Task.options).selectinload(db.TaskOption.method),
            selectinload(db.Rater.tasks).selectinload(db.Task.text)))
        out = {t.position: (t.is_check, t.options[0].method.name if t.options[0].method else None, t.text.text)
               for t in rater.tasks}
    engine.dispose()
    return out


def test_describe_screens_votes_and_results(describe_study):
    from fastapi.testclient import TestClient

    from egoframe.study.server import ServerSettings, create_app

    database, created = describe_study
    assert created.methods == ["tuned", "offshelf"]
    with TestClient(create_app(ServerSettings(database=database)), follow_redirects=False) as client:
        for k, invite in enumerate(created.invites):
            screens = _answers(database, invite.label)
            assert len(screens) == 6 * 2 + 1  # every sample x source, plus one check
            assert sum(c for c, _, _ in screens.values()) == 1
            for position, (is_check, source, text) in sorted(screens.items()):
                page = client.get(f"/r/{invite.token}/task/{position}")
                assert page.status_code == 200
                # Fig. 11: both frames, the description, the two answers; never the source's name.
                assert "Aligned" in page.text and "Not aligned" in page.text and str(escape(text)) in page.text
                assert "tuned" not in page.text and "offshelf" not in page.text
                assert page.text.count('/img/') == 2
                # Raters 1-4 judge right (tuned aligned, the rest not); rater 5 calls everything aligned.
                aligned = (source == "tuned") if k < 4 else True
                if k == 0 and position == 1:
                    bad = client.post(f"/r/{invite.token}/task/1", data={"choice": "C", "csrf": csrf_of(page.text)})
                    assert bad.status_code == 400
                answer = client.post(f"/r/{invite.token}/task/{position}",
                                     data={"choice": "A" if aligned else "B", "csrf": csrf_of(page.text)})
                assert answer.status_code == 303
            assert "You answered Aligned" in client.get(f"/r/{invite.token}/task/{position}").text or \
                "You answered Not aligned" in client.get(f"/r/{invite.token}/task/{position}").text
    # Rater 5 failed the check (a description of another action called aligned): excluded by default.
    res = compute_results(database, "desc", n_bootstrap=500)
    assert [r.excluded for r in res.raters] == [False, False, False, False, True]
    rates = {m.method: m for m in res.methods}
    assert rates["tuned"].win_rate == 1.0 and rates["tuned"].shown == 24 and rates["tuned"].wins == 24
    assert rates["offshelf"].win_rate == 0.0 and rates["offshelf"].ci_high == 0.0
    assert res.fleiss_kappa == pytest.approx(1.0) and res.kappa_items == 12
    (comparison,) = res.comparisons
    assert comparison["a"] == "tuned" and comparison["difference"]["value"] == pytest.approx(1.0)
    assert comparison["p_value"] < 0.01 and comparison["difference"]["n"] == 6
    # Keeping rater 5: tuned stays 100 %, offshelf rises to 1/5 of its votes and agreement drops below 1.
    res = compute_results(database, "desc", n_bootstrap=500, max_failed_checks=1)
    rates = {m.method: m for m in res.methods}
    assert rates["offshelf"].win_rate == pytest.approx(6 / 30) and res.kappa_by_method["offshelf"] < 1
    table = paper_table([res])
    assert table.startswith("| Method | desc aligned |") and "tuned - offshelf aligned: +80.0 points" in table


def test_describe_admin_page_and_cli(describe_study, tmp_path, capsys):
    from egoframe.cli.main import main

    database, _ = describe_study
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "results", "--db", database, "--study", "desc", "--bootstrap", "200", "--plot", "svg",
              "--out", str(tmp_path / "res")])
    assert exit_info.value.code == 0
    assert "| Method | desc aligned |" in capsys.readouterr().out
    assert "aligned (%)" in (tmp_path / "res" / "desc-win-rates.svg").read_text()
