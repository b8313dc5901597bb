"""`egoframe vllm ...` commands: thin wrappers; user errors are one line and exit code 2."""

from __future__ import annotations

import json
import os

import pytest

from egoframe.cli.main import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_describe_and_embed(tiny_vllm_dir, dataset_dir, tmp_path, capsys):
    from egoframe.vllm.cache import VllmEmbeddingCache

    code, out, _ = _run(["vllm", "describe", "--model", tiny_vllm_dir, "--image",
                         os.path.join(dataset_dir, "frames/0000.png"), "--action", "take cup",
                         "--max-new-tokens", "3"], capsys)
    assert code in (0, None) and out.strip()
    cache = str(tmp_path / "cache")
    code, out, _ = _run(["vllm", "embed", dataset_dir, "--model", tiny_vllm_dir, "--out", cache, "--split", "test",
                         "--max-new-tokens", "3", "--quiet"], capsys)
    assert code in (0, None) and "6 items in 1 shards (1 computed" in out
    code, out, _ = _run(["vllm", "embed", dataset_dir, "--model", tiny_vllm_dir, "--out", cache, "--split", "test",
                         "--max-new-tokens", "3", "--quiet"], capsys)
    assert "(0 computed, 1 already done)" in out
    assert len(VllmEmbeddingCache(cache)) == 6
    code, _, err = _run(["vllm", "embed", dataset_dir, "--model", tiny_vllm_dir, "--out", cache, "--split", "test",
                         "--max-new-tokens", "4", "--quiet"], capsys)
    assert code == 2 and err.startswith("error: ") and "another VLLM or config" in err and err.count("\n") == 1


def test_evaluate_prints_accuracy_and_chance(tiny_vllm_dir, dataset_dir, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, out, _ = _run(["vllm", "evaluate", dataset_dir, "--model", tiny_vllm_dir, "--max-new-tokens", "4",
                         "--report", str(report), "--quiet"], capsys)
    assert code in (0, None)
    assert "held-out pairs: 6" in out and "hand:" in out and "object:" in out and "chance" in out
    data = json.loads(report.read_text())
    assert data["n"] == 6 and data["object_chance_uniform"] == pytest.approx(1 / 3)


def test_user_errors_are_one_line(tmp_path, capsys):
    code, _, err = _run(["vllm", "describe", "--model", str(tmp_path), "--image", "x.png", "--action", "take cup"],
                        capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    code, _, err = _run(["vllm", "train", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 2 and "egoframe data curate" in err
