"""Training the small VAE of the embedded default.

Stable Diffusion's VAE cannot be downloaded here, so the embedded default trains its own: the same
AutoencoderKL class and layout, 2x downsampling, so a 64 px frame becomes a 4 x 32 x 32 latent and the
diffusion model keeps Stable Diffusion's latent code path at CPU cost.
Loss: L1 + L2 reconstruction plus a small KL term (Rombach et al. 2022, Sec. 3 and App. G, without the
adversarial and perceptual terms, which a flat procedural world does not need).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass

import torch

from egoframe.data.dataset import FramePairDataset
from egoframe.errors import ConfigError, InputError
from egoframe.evaluation.pixel import psnr_from_mse
from egoframe.models.tiny import TinyConfig, tiny_components
from egoframe.utils.checkpoint import (
    atomic_write_json,
    load_tensors,
    optimizer_from_files,
    optimizer_to_files,
    save_tensors,
)
from egoframe.utils.progress import ProgressBar

logger = logging.getLogger(__name__)


@dataclass
class VaeTrainConfig:
    data: str  # curated data set dir
    out_dir: str
    resolution: int = 64
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0
    checkpoint_every: int = 50  # a killed run resumes from the last of these
    # one entry per level; n levels downsample 2^(n-1) x: (32, 64) turns 64 px into 32 x 32 latents,
    # (32, 64, 64) turns 128 px into 32 x 32 (the same UNet cost at twice the frame size)
    vae_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    # train on random crops of this size (None: whole frames). The VAE is convolutional (no attention), so one
    # trained on 64 px crops of 128 px frames codes whole 128 px frames at the same pixel scale, at a quarter of
    # the cost per frame
    crop: int | None = None
    max_pairs: int | None = 4000  # frames of at most this many training pairs are held in memory (both frames)


def train_vae(config: VaeTrainConfig, progress: bool = True) -> dict:
    """Train and save an AutoencoderKL (diffusers layout, safetensors) to ``config.out_dir``.

    A finished directory is reused as it is (rerunning the command costs nothing); the latent scaling
    factor is set to 1 / std of the training latents, as Stable Diffusion's 0.18215 was.
    """
    from diffusers import AutoencoderKL

    if config.steps < 1 or config.batch_size < 1:
        raise ConfigError("steps and batch_size must be >= 1")
    factor = 2 ** (len(config.vae_channels) - 1)
    if config.crop is not None and not (factor <= config.crop <= config.resolution and config.crop % factor == 0):
        raise ConfigError(f"crop must be a multiple of the VAE's downsampling {factor} in [{factor}, "
                          f"{config.resolution}], got {config.crop}")
    done_file = os.path.join(config.out_dir, "config.json")
    if os.path.exists(done_file) and os.path.exists(os.path.join(config.out_dir, "vae_train.json")):
        logger.info("VAE already trained in %s", config.out_dir)
        return {"reused": True, "out_dir": config.out_dir}
    dataset = FramePairDataset(config.data, resolution=config.resolution, split="train")
    if len(dataset) == 0:
        raise InputError(f"no training pairs in {config.data}")
    # Both frames of every pair: the VAE must reconstruct inputs and targets alike.
    images = _all_frames(dataset, config.max_pairs)  # (N, 3, R, R)
    tiny = TinyConfig(resolution=config.resolution, vae_channels=tuple(config.vae_channels),
                      vae_latent_channels=config.latent_channels)
    vae: AutoencoderKL = tiny_components(tiny, ablation="descriptions", seed=config.seed)["vae"]
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    checkpoint_dir = os.path.join(config.out_dir, "checkpoint")
    first = _load_checkpoint(checkpoint_dir, vae, optimizer, generator, config)
    start = time.time()
    bar = ProgressBar(progress, "vae", config.steps, first, fields={"loss": "-"}).start()
    loss_value = float("nan")
    try:
        for step in range(first, config.steps):
            idx = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
            x = images[idx]
            if config.crop is not None and config.crop < config.resolution:
                # one offset per batch, on the latent grid: every crop sees the frame as the whole frame would
                u, v = (int(o) * factor for o in torch.randint(0, (config.resolution - config.crop) // factor + 1,
                                                                 (2,), generator=generator))
                x = x[:, :, u:u + config.crop, v:v + config.crop]
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
            recon = vae.decode(z).sample
            kl = posterior.kl().mean() / x[0].numel()
            loss = (recon - x).abs().mean() + ((recon - x) ** 2).mean() + config.kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            loss_value = float(loss.detach())
            bar.advance(loss=f"{loss_value:.4f}")
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                _save_checkpoint(checkpoint_dir, vae, optimizer, generator, step + 1, config)
    finally:
        bar.close()
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(images[i:i + 64]).latent_dist.mean for i in range(0, min(len(images), 512), 64)])
        recon = vae.decode(vae.encode(images[:64]).latent_dist.mode()).sample
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    psnr = psnr_from_mse(float(((recon.clamp(-1, 1) - images[:64]) ** 2).mean()), peak=2.0)
    os.makedirs(config.out_dir, exist_ok=True)
    vae.save_pretrained(config.out_dir)  # writes config.json + safetensors
    import shutil

    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    summary = {"steps": config.steps, "final_loss": loss_value, "reconstruction_psnr_db": psnr,
               "scaling_factor": scale, "seconds": round(time.time() - start, 1), "config": asdict(config)}
    atomic_write_json(os.path.join(config.out_dir, "vae_train.json"), summary)  # written last: marks done
    return summary


def fit_patch_autoencoder(data: str, out_dir: str, resolution: int = 128, patch_size: int = 4,
                          max_pairs: int | None = 2000) -> dict:
    """Fit and save the lossless PatchAutoencoder (models/autoencoder.py) on a data set's training frames.

    Nothing is learned but the mean colour and one scale (seconds); the latent of a 128 px frame at patch 4 is
    48 x 32 x 32 and decodes back exactly. A finished directory is reused as it is.
    """
    from egoframe.models.autoencoder import PatchAutoencoder  # lazy: pulls diffusers

    if resolution % patch_size:
        raise ConfigError(f"resolution {resolution} is not divisible by the patch size {patch_size}")
    summary_file = os.path.join(out_dir, "vae_fit.json")
    if os.path.exists(summary_file) and os.path.exists(os.path.join(out_dir, "config.json")):
        logger.info("patch autoencoder already fitted in %s", out_dir)
        return {"reused": True, "out_dir": out_dir}
    dataset = FramePairDataset(data, resolution=resolution, split="train")
    if len(dataset) == 0:
        raise InputError(f"no training pairs in {data}")
    start = time.time()
    images = _all_frames(dataset, max_pairs)
    vae = PatchAutoencoder(patch_size=patch_size, sample_size=resolution).fit(images)
    with torch.no_grad():
        recon = vae.decode(vae.encode(images[:64]).latent_dist.mode()).sample
    error = float((recon - images[:64]).abs().max())
    os.makedirs(out_dir, exist_ok=True)
    vae.save_pretrained(out_dir)
    summary = {"kind": "patch", "patch_size": patch_size, "resolution": resolution,
               "latent_shape": [int(vae.config.latent_channels), resolution // patch_size, resolution // patch_size],
               "scaling_factor": float(vae.config.scaling_factor), "shift": [float(v) for v in vae.shift],
               "max_reconstruction_error": error, "frames": int(len(images)), "seconds": round(time.time() - start, 1)}
    atomic_write_json(summary_file, summary)  # written last: marks done
    return summary


def _save_checkpoint(path, vae, optimizer, generator, step, config) -> None:
    """Weights, optimizer and sampling RNG, written to a temp dir and renamed (atomic)."""
    import shutil

    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_tensors(vae.state_dict(), os.path.join(tmp, "model.safetensors"))
    tensors, rest = optimizer_to_files(optimizer)
    save_tensors({**tensors, "__generator__": generator.get_state()}, os.path.join(tmp, "optimizer.safetensors"))
    atomic_write_json(os.path.join(tmp, "state.json"), {"step": step, "optimizer": rest, "config": asdict(config)})
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _load_checkpoint(path, vae, optimizer, generator, config) -> int:
    import json

    if not os.path.exists(os.path.join(path, "state.json")):
        return 0
    with open(os.path.join(path, "state.json")) as fh:
        state = json.load(fh)
    saved = {"latent_channels": 4, **{k: v for k, v in state["config"].items() if k not in ("steps", "checkpoint_every")}}
    now = {k: v for k, v in asdict(config).items() if k not in ("steps", "checkpoint_every")}
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(now)):
        raise ConfigError(f"{path} was written with other VAE settings: use another --out or delete it")
    vae.load_state_dict(load_tensors(os.path.join(path, "model.safetensors")))
    tensors = load_tensors(os.path.join(path, "optimizer.safetensors"))
    generator.set_state(tensors.pop("__generator__"))
    optimizer.load_state_dict(optimizer_from_files(tensors, state["optimizer"]))
    logger.info("resuming VAE training at step %d", state["step"])
    return int(state["step"])


def _all_frames(dataset, max_pairs: int | None = None) -> torch.Tensor:
    """Both frames of the first ``max_pairs`` pairs (spread over the data set when it holds more)."""
    import numpy as np

    n = len(dataset)
    picks = range(n) if not max_pairs or n <= max_pairs else np.linspace(0, n - 1, max_pairs).round().astype(int)
    frames = []
    for i in picks:
        item = dataset[int(i)]
        frames.extend([item["input"], item["target"]])
    return torch.stack(frames)
