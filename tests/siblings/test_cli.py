"""`egoframe sibling train / generate / reasoning` through the real entry point."""

from __future__ import annotations

import pytest
import yaml

from egoframe.cli.main import main


def _ok(argv):
    with pytest.raises(SystemExit) as exit_info:  # typer exits 0 after a successful command
        main(argv)
    assert exit_info.value.code == 0


def test_train_then_generate(sibling_pairs, tmp_path, capsys):
    config = tmp_path / "rp2p.yaml"
    config.write_text(yaml.safe_dump({"system": "mgie", "root": sibling_pairs, "out_dir": str(tmp_path / "run"),
                                      "resolution": 32, "batch_size": 2, "max_steps": 1}))
    _ok(["sibling", "train", "--config", str(config), "--system", "rp2p"])
    assert "-> " in capsys.readouterr().out
    image = f"{sibling_pairs}/shards/0000_in.png"
    _ok(["sibling", "generate", "--model", str(tmp_path / "run" / "model"), "--image", image,
          "--instruction", "I am thirsty", "--out", str(tmp_path / "out.png"), "--steps", "1"])
    assert (tmp_path / "out.png").exists() and "rp2p: wrote" in capsys.readouterr().out


def test_config_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"system": "dalle", "root": "x", "out_dir": "y"}))
    with pytest.raises(SystemExit) as exit_info:
        main(["sibling", "train", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "system" in err and "\n" not in err
