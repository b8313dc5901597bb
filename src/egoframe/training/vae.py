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
from egoframe.engine import Checkpoints, GeneratorState, ModuleState, TrainState, check_resumable, run_steps
from egoframe.errors import ConfigError, InputError
from egoframe.evaluation.pixel import psnr_from_mse
from egoframe.models.tiny import TinyConfig, tiny_components
from egoframe.utils.checkpoint import atomic_write_json
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
    saver = Checkpoints(os.path.join(config.out_dir, "checkpoint"), single=True)
    state = TrainState(tensors={"model": ModuleState(vae), "generator": GeneratorState(generator)},
                       optimizer=optimizer, rng=False)  # every draw comes from `generator`
    first = 0
    if saver.latest():
        check_resumable(saver.record(saver.root)["config"], asdict(config), config.out_dir,
                        free=("steps", "checkpoint_every"))
        first = saver.load(saver.root, state)["step"]
        logger.info("resuming VAE training at step %d", first)
    start = time.time()

    def step_fn(step: int) -> float:
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
        return float(loss.detach())

    with ProgressBar(progress, "vae", config.steps, first, fields={"loss": "-"}) as bar:
        loss_value = run_steps(step_fn, first, config.steps, bar=bar, checkpoint_every=config.checkpoint_every,
                               checkpoint=lambda done: saver.save(done, state, config=asdict(config)))
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(images[i:i + 64]).latent_dist.mean for i in range(0, min(len(images), 512), 64)])
        recon = vae.decode(vae.encode(images[:64]).latent_dist.mode()).sample
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    psnr = psnr_from_mse(float(((recon.clamp(-1, 1) - images[:64]) ** 2).mean()), peak=2.0)
    os.makedirs(config.out_dir, exist_ok=True)
    vae.save_pretrained(config.out_dir)  # writes config.json + safetensors
    saver.clear()
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
