"""egoframe's one config style (utils/config.py), shared by `egoframe train` and `egoframe sibling train`."""

import pytest

from egoframe.errors import ConfigError
from egoframe.siblings.train import load_train_config
from egoframe.training.config import load_config
from egoframe.utils.config import StrictModel, apply_overrides, load_yaml_config


class Inner(StrictModel):
    lr: float = 1e-4


class Outer(StrictModel):
    optim: Inner = Inner()
    name: str = "x"


def test_yaml_overrides_and_one_line_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.5\n")
    assert load_yaml_config(Outer, str(path), {"optim.lr": 0.25, "name": "y"}) == Outer(optim=Inner(lr=0.25), name="y")
    with pytest.raises(ConfigError, match=r"^optim.lrr: unknown key$"):
        load_yaml_config(Outer, str(path), {"optim.lrr": 1})
    with pytest.raises(ConfigError, match="name is a value, not a section"):
        apply_overrides({"name": "x"}, {"name.deeper": 1})
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml_config(Outer, str(path))
    path.write_text("optim: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_config(Outer, str(path))
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml_config(Outer, str(tmp_path / "missing.yaml"))


def test_both_trainers_read_their_yaml_the_same_way(tmp_path):
    lego = tmp_path / "lego.yaml"
    lego.write_text("data: {root: d}\nlog: {out_dir: o}\nmodel: {ablation: descriptions}\n")
    assert load_config(str(lego), {"optim.lr": 0.001}).optim.lr == 0.001
    sibling = tmp_path / "sibling.yaml"
    sibling.write_text("system: rp2p\nroot: d\nout_dir: o\n")
    with pytest.raises(ConfigError, match="^bogus: unknown key$"):
        load_train_config(str(sibling), {"bogus": 1})
    with pytest.raises(ConfigError, match="^optim.bogus: unknown key$"):
        load_config(str(lego), {"optim.bogus": 1})
