import pytest
import torch

from egoframe.training import vae as vae_module
from egoframe.training.vae import VaeTrainConfig, train_vae


def _weights(path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(path).state_dict()


def test_vae_trains_saves_and_resumes_exactly(pairs_dir, tmp_path, monkeypatch):
    base = dict(data=pairs_dir, resolution=32, steps=4, batch_size=4, checkpoint_every=2)
    summary = train_vae(VaeTrainConfig(out_dir=str(tmp_path / "straight"), **base), progress=False)
    assert summary["scaling_factor"] > 0 and summary["reconstruction_psnr_db"] > 0
    assert not (tmp_path / "straight" / "checkpoint").exists()  # removed once the model is saved
    assert train_vae(VaeTrainConfig(out_dir=str(tmp_path / "straight"), **base), progress=False)["reused"]

    real_save = vae_module._save_checkpoint

    def save_then_die(*args):
        real_save(*args)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint

    monkeypatch.setattr(vae_module, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_vae(VaeTrainConfig(out_dir=str(tmp_path / "killed"), **base), progress=False)
    monkeypatch.setattr(vae_module, "_save_checkpoint", real_save)
    assert (tmp_path / "killed" / "checkpoint" / "state.json").exists()
    train_vae(VaeTrainConfig(out_dir=str(tmp_path / "killed"), **base), progress=False)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
