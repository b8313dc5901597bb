"""Each system trains a few steps on tiny pairs: the right parts change, the losses are the papers', the
exported model loads and generates; SmartEdit's stage 1 output initialises stage 2."""

from __future__ import annotations

import pytest
import torch

from egoframe.errors import ConfigError
from egoframe.siblings.pipeline import load_sibling_pipeline
from egoframe.siblings.train import SiblingTrainConfig, read_losses, train_sibling


def _config(pairs, out, system, **kw):
    return SiblingTrainConfig(system=system, root=pairs, out_dir=str(out), resolution=32, batch_size=2, max_steps=2,
                              lr=1e-3, drop_text=0.3, drop_image=0.1, drop_both=0.1, **kw)


@pytest.mark.parametrize("system,terms", [("mgie", {"ce", "mse", "diffusion"}), ("rp2p", {"diffusion"})])
def test_train_exports_a_working_model(system, terms, sibling_pairs, tmp_path):
    result = train_sibling(_config(sibling_pairs, tmp_path, system), progress=False)
    rows = read_losses(str(tmp_path))
    assert len(rows) == 2 and set(rows[0]) - {"step", "loss"} == terms
    pipe = load_sibling_pipeline(result.out_dir)
    assert pipe.system == system
    out = pipe(torch.zeros(1, 3, 32, 32), "take cup", num_inference_steps=1, output_type="pt", progress=False)
    assert torch.isfinite(out.images).all()
    with pytest.raises(ConfigError, match="already holds a run"):
        train_sibling(_config(sibling_pairs, tmp_path, system), progress=False)


def test_smartedit_stage1_then_stage2(sibling_pairs, tmp_path):
    stage1 = train_sibling(_config(sibling_pairs, tmp_path / "s1", "smartedit", stage=1), progress=False)
    assert set(read_losses(str(tmp_path / "s1"))[0]) == {"step", "loss", "ce", "mse"}
    from egoframe.siblings.connectors import SmartEditConnector

    before = SmartEditConnector.from_pretrained(f"{stage1.out_dir}/connector", use_safetensors=True)
    cfg = _config(sibling_pairs, tmp_path / "s2", "smartedit", init_from=stage1.out_dir, ema_decay=0.0)
    result = train_sibling(cfg, progress=False)
    assert set(read_losses(str(tmp_path / "s2"))[0]) == {"step", "loss", "ce", "diffusion"}
    after = load_sibling_pipeline(result.out_dir)
    # stage 2 trains the connector, including the zero-init output layers, starting from stage 1's weights
    assert not torch.equal(before.qformer_out.weight, after.connector.qformer_out.weight)
    assert torch.count_nonzero(after.connector.image_out.weight) > 0
    assert len(after.edit_token_ids) == 4


def test_config_errors():
    with pytest.raises(ValueError, match="stage 1"):
        SiblingTrainConfig(system="mgie", stage=1, root="x", out_dir="y")
    assert SiblingTrainConfig(system="mgie", root="x", out_dir="y").weights() == (1.0, 0.5, 1.0)
    assert SiblingTrainConfig(system="smartedit", root="x", out_dir="y").weights() == (1.0, 0.0, 1.0)
