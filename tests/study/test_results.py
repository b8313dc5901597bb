"""Win rates, bootstrap intervals, Fleiss' kappa, exclusion, CSV/plot/table outputs, and the CLI."""

from __future__ import annotations

import csv
import io
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from egoframe.study.results import (
    RaterSummary,
    VoteRow,
    fleiss_kappa,
    paper_table,
    results_from_votes,
    svg_bar_chart,
    votes_csv,
    win_rates_csv,
    write_plot,
)

# Fleiss (1971) as tabulated on Wikipedia's "Fleiss' kappa" page: 10 items, 14 raters, 5 categories, kappa 0.210.
FLEISS_EXAMPLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                  [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_textbook_value():
    kappa, items = fleiss_kappa(np.array(FLEISS_EXAMPLE))
    assert items == 10 and kappa == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_edges():
    assert fleiss_kappa(np.array([[3, 0], [0, 3]]))[0] == pytest.approx(1.0)
    assert fleiss_kappa(np.array([[1, 0], [0, 1]])) == (None, 0)  # single ratings say nothing about agreement
    assert fleiss_kappa(np.array([[3], [3]]))[0] is None  # one category: chance agreement is 1
    # Items with unequal numbers of ratings are allowed.
    kappa, items = fleiss_kappa(np.array([[2, 0], [0, 3], [1, 1]]))
    assert items == 3 and -1 <= kappa <= 1


def _row(rater, sample, chosen, shown=("lego", "ip2p", "sd"), check=False, passed=None, excluded=False):
    return VoteRow(study="ego4d", rater=rater, excluded=excluded, position=1, sample_id=sample, action="take cup",
                   is_check=check, shown=list(shown), chosen=chosen, check_passed=passed, comment="",
                   created_at="2024-01-01T00:00:00")


def _raters(*labels, excluded=()):
    return [RaterSummary(label=x, answered=1, total=1, checks_answered=1, checks_failed=int(x in excluded),
                         excluded=x in excluded) for x in labels]


def test_win_rates_exclusion_and_intervals():
    rows = []
    for i in range(20):
        rows.append(_row("r1", f"s{i}", "lego" if i < 15 else "ip2p"))  # 75% lego
        rows.append(_row("r2", f"s{i}", "lego" if i < 10 else "sd"))  # 50% lego
        rows.append(_row("bad", f"s{i}", "sd", excluded=True))  # excluded: must not count
    rows.append(_row("r1", "s0", "target", shown=("input", "target", "input"), check=True, passed=True))
    res = results_from_votes("ego4d", "best", ["lego", "ip2p", "sd"], rows, _raters("r1", "r2", "bad", excluded={"bad"}),
                             n_bootstrap=500, seed=0)
    by = {m.method: m for m in res.methods}
    assert res.n_votes == 40
    assert by["lego"].win_rate == pytest.approx(25 / 40) and by["lego"].wins == 25 and by["lego"].shown == 40
    assert by["ip2p"].win_rate == pytest.approx(5 / 40) and by["sd"].win_rate == pytest.approx(10 / 40)
    assert sum(m.win_rate for m in res.methods) == pytest.approx(1.0)
    for m in res.methods:
        assert m.ci_low <= m.win_rate <= m.ci_high and m.ci_high - m.ci_low < 0.5
    # Same seed, same intervals; another seed moves them a little.
    again = results_from_votes("ego4d", "best", ["lego", "ip2p", "sd"], rows, res.raters, n_bootstrap=500, seed=0)
    assert again.methods[0].ci_low == by["lego"].ci_low
    assert res.fleiss_kappa is not None and res.kappa_items == 20


def test_unanimous_raters_give_kappa_one_and_narrow_interval():
    rows = [_row(r, f"s{i}", "lego") for r in ("a", "b", "c") for i in range(10)]
    res = results_from_votes("x", "best", ["lego", "ip2p", "sd"], rows, _raters("a", "b", "c"), n_bootstrap=200)
    assert res.methods[0].win_rate == 1.0 and res.methods[0].ci_low == 1.0
    assert res.fleiss_kappa is None  # all votes in one category: chance agreement is 1, kappa undefined
    rows += [_row(r, f"t{i}", "ip2p") for r in ("a", "b", "c") for i in range(10)]
    res = results_from_votes("x", "best", ["lego", "ip2p", "sd"], rows, _raters("a", "b", "c"), n_bootstrap=200)
    assert res.fleiss_kappa == pytest.approx(1.0)


def test_pairwise_rates_and_matrix():
    rows = []
    for i in range(10):
        rows.append(_row("a", f"s{i}", "lego", shown=("lego", "ip2p")))
        rows.append(_row("a", f"s{i}", "lego" if i < 6 else "sd", shown=("sd", "lego")))
        rows.append(_row("a", f"s{i}", "ip2p", shown=("ip2p", "sd")))
    res = results_from_votes("x", "pairwise", ["lego", "ip2p", "sd"], rows, _raters("a"), n_bootstrap=100)
    by = {m.method: m for m in res.methods}
    assert by["lego"].wins == 16 and by["lego"].shown == 20
    assert res.pairwise["lego"]["ip2p"] == 1.0 and res.pairwise["lego"]["sd"] == pytest.approx(0.6)
    assert res.pairwise["sd"]["lego"] == pytest.approx(0.4) and res.pairwise["ip2p"]["sd"] == 1.0


def test_outputs_table_csv_svg(tmp_path):
    rows = [_row("a", f"s{i}", "lego" if i % 3 else "ip2p") for i in range(9)]
    rows.append(_row("a", "s0", "=HYPERLINK()", shown=("=HYPERLINK()",)))  # hostile name survives as data
    res = results_from_votes("ego4d", "best", ["lego", "ip2p", "sd", "=HYPERLINK()"], rows, _raters("a"),
                             n_bootstrap=100)
    epic_rows = [_row("a", f"s{i}", "lego" if i % 3 else "ip2p", shown=("ip2p", "lego")) for i in range(3)]
    epic = results_from_votes("epic", "best", ["lego", "ip2p"], epic_rows, _raters("a"), n_bootstrap=100)
    table = paper_table([res, epic])
    lines = table.splitlines()
    assert lines[0] == "| Method | ego4d User Study | epic User Study |"
    assert "| lego | 66.67 | **66.67** |" in lines  # 6 picks of 9 showings
    assert "| =HYPERLINK() | **100.00** | – |" in lines  # the best per column is bold
    assert "| sd | 0.00 | – |" in lines
    assert "Fleiss' kappa" in table
    parsed = list(csv.DictReader(io.StringIO(win_rates_csv([res, epic]))))
    assert len(parsed) == 6 and float(parsed[0]["win_rate"]) == pytest.approx(6 / 9)
    votes = list(csv.reader(io.StringIO(votes_csv(rows))))
    assert votes[0][0] == "study" and len(votes) == 11
    svg = svg_bar_chart(res)
    tree = ET.fromstring(svg)  # well-formed XML, names escaped
    bars = [e for e in tree.iter() if e.tag.endswith("rect") and e.get("class") == "bar"]
    assert len(bars) == 4
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] > heights[1] > 0 and heights[2] == 0
    path = write_plot(res, str(tmp_path / "plot.png"), backend="svg")
    assert path.endswith(".svg") and open(path).read() == svg


def test_matplotlib_plot(tmp_path):
    rows = [_row("a", f"s{i}", "lego") for i in range(3)]
    res = results_from_votes("x", "best", ["lego", "ip2p", "sd"], rows, _raters("a"), n_bootstrap=50)
    path = write_plot(res, str(tmp_path / "plot.png"), backend="matplotlib")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_parameters():
    from egoframe.errors import InputError

    with pytest.raises(InputError, match="confidence"):
        results_from_votes("x", "best", ["a"], [], [], confidence=1.5)
    res = results_from_votes("x", "best", ["a"], [], [])
    assert math.isnan(res.methods[0].win_rate) and res.n_votes == 0


def test_cli_create_vote_results(tmp_path, generation_set, database_target):
    import re

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from egoframe.cli.main import app
    from egoframe.study.server import ServerSettings, create_app

    runner = CliRunner()
    database, invites = database_target, tmp_path / "invites.csv"
    result = runner.invoke(app, ["study", "create", generation_set, "--db", database, "--name", "ego4d",
                                 "--raters", "2", "--attention-checks", "1", "--invites", str(invites),
                                 "--base-url", "http://study.example"])
    assert result.exit_code == 0, result.output
    assert "6 samples x 3 methods" in result.output
    assert oct(invites.stat().st_mode & 0o777) == "0o600"
    links = [row["link"] for row in csv.DictReader(open(invites))]
    assert len(links) == 2 and all(x.startswith("http://study.example/r/") for x in links)
    with TestClient(create_app(ServerSettings(database=database)), follow_redirects=False) as client:
        for link in links:
            token = link.rsplit("/", 1)[1]
            for position in range(1, 8):
                page = client.get(f"/r/{token}/task/{position}").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
                assert client.post(f"/r/{token}/task/{position}", data={"choice": "A", "csrf": csrf}).status_code == 303
    out = tmp_path / "results"
    result = runner.invoke(app, ["study", "results", "--db", database, "--study", "ego4d", "--out", str(out),
                                 "--bootstrap", "100", "--plot", "svg", "--max-failed-checks", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("| Method | ego4d User Study |")
    assert {p.name for p in out.iterdir()} >= {"table.md", "win_rates.csv", "votes.csv", "results.json",
                                                "ego4d-win-rates.svg"}
    assert len(list(csv.DictReader(open(out / "votes.csv")))) == 14
    result = runner.invoke(app, ["study", "export", "--db", database, "--study", "ego4d", "--out",
                                 str(tmp_path / "v.csv")])
    assert result.exit_code == 0 and "14 votes" in result.output
    result = runner.invoke(app, ["study", "invite", "late", "--db", database, "--study", "ego4d"])
    assert result.exit_code == 0 and result.output.startswith("http://127.0.0.1:8000/r/")
    result = runner.invoke(app, ["study", "admin-password", "--db", database, "--password-stdin"],
                           input="long enough password\n")
    assert result.exit_code == 0 and "admin password set" in result.output


def test_cli_errors_are_one_line(tmp_path, capsys):
    from egoframe.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["study", "results", "--db", str(tmp_path / "none.db"), "--study", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no study database at") and err.count("\n") == 1
