import json

import pytest
import torch

from egoframe.engine import Checkpoints
from egoframe.errors import ConfigError
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

    real_save = Checkpoints.save

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint

    monkeypatch.setattr(Checkpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_vae(VaeTrainConfig(out_dir=str(tmp_path / "killed"), **base), progress=False)
    monkeypatch.setattr(Checkpoints, "save", real_save)
    assert (tmp_path / "killed" / "checkpoint" / "state.json").exists()
    train_vae(VaeTrainConfig(out_dir=str(tmp_path / "killed"), **base), progress=False)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_vae_on_crops_codes_whole_frames_with_its_latent_channels(pairs_dir, tmp_path):
    from egoframe.models.autoencoder import load_autoencoder

    config = VaeTrainConfig(data=pairs_dir, out_dir=str(tmp_path / "crop"), resolution=32, steps=2, batch_size=4,
                            vae_channels=(16, 32, 32), latent_channels=8, crop=16)
    train_vae(config, progress=False)
    vae = load_autoencoder(str(tmp_path / "crop"))
    z = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mode()
    assert z.shape == (1, 8, 8, 8)  # 4x down, 8 channels, on the whole 32 px frame
    with pytest.raises(ConfigError, match="multiple of the VAE's downsampling 4"):
        train_vae(VaeTrainConfig(**{**config.__dict__, "out_dir": str(tmp_path / "bad"), "crop": 18}), progress=False)


def test_patch_autoencoder_fit_and_cli(pairs_dir, tmp_path):
    from typer.testing import CliRunner

    from egoframe.cli.main import app

    result = CliRunner().invoke(app, ["vae", "patch", "--data", pairs_dir, "--out", str(tmp_path / "p"),
                                      "--resolution", "32", "--patch", "4"])
    assert result.exit_code == 0, result.output
    assert "32 px -> 48 x 8 x 8" in result.output
    summary = json.loads((tmp_path / "p" / "vae_fit.json").read_text())
    assert summary["max_reconstruction_error"] < 1e-5 and summary["scaling_factor"] > 0
    again = CliRunner().invoke(app, ["vae", "patch", "--data", pairs_dir, "--out", str(tmp_path / "p"),
                                     "--resolution", "32"])
    assert "already fitted" in again.output
