"""The frame autoencoders a LEGO pipeline's UNet works in: Stable Diffusion's AutoencoderKL or a fixed patch code.

``PatchAutoencoder`` folds every p x p patch of pixels into channels (``pixel_unshuffle``; Shi et al. 2016,
"Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel CNN") and unfolds it back
exactly: a 128 px frame becomes a 48 x 32 x 32 latent, the same spatial size (and so nearly the same UNet cost)
as a 64 px frame in the embedded default's 2x KL VAE, at twice the frame size and with no decoder error. The
learned VAE capped what any generator could show (true targets through its round trip: 88.5 % action success,
docs/embedded/LOG.md); a lossless code removes that cap. Diffusing in patch space is the "patching" of Hoogeboom
et al. 2023 ("simple diffusion", Sec. 3.2). The only statistics are a per-channel shift (the mean colour) and
one scale, fitted on training frames so the latent is centred with unit variance, the role Stable Diffusion's
``scaling_factor`` plays.

The class has the slice of AutoencoderKL's interface the pipelines use (``encode(x).latent_dist`` with
``mode``/``mean``/``std``/``sample``, ``decode(z).sample``, ``config.latent_channels``,
``config.scaling_factor``), and saves and loads in the diffusers layout (config.json + safetensors).
"""

from __future__ import annotations

import json
import os

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

from egoframe.errors import ModelLoadError
from egoframe.utils.safe_loading import weights_kwargs


class PatchAutoencoder(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: int = 3, patch_size: int = 4, scaling_factor: float = 1.0,
                 sample_size: int = 128, latent_channels: int | None = None):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        expected = in_channels * patch_size**2
        if latent_channels is not None and latent_channels != expected:
            raise ValueError(f"latent_channels {latent_channels} != in_channels x patch_size^2 = {expected}")
        self.register_to_config(latent_channels=expected)
        # The mean of each colour channel over training frames (fitted by ``fit``), removed before folding.
        self.register_buffer("shift", torch.zeros(in_channels))

    @property
    def downsampling_factor(self) -> int:
        return int(self.config.patch_size)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """(B, C, H, W) pixels in [-1, 1] -> a deterministic "posterior" over (B, C p^2, H/p, W/p) latents."""
        p = self.config.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"frame size {tuple(x.shape[-2:])} is not divisible by the patch size {p}")
        z = torch.nn.functional.pixel_unshuffle(x - self.shift.to(x.dtype).view(1, -1, 1, 1), p)
        # DiagonalGaussianDistribution takes [mean, logvar]; deterministic=True makes std and var exactly 0.
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.zeros_like(z)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        x = torch.nn.functional.pixel_shuffle(z, self.config.patch_size) + self.shift.to(z.dtype).view(1, -1, 1, 1)
        return DecoderOutput(sample=x) if return_dict else (x,)

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> "PatchAutoencoder":
        """Set the shift and ``scaling_factor`` from (N, C, H, W) frames in [-1, 1]: centred, unit variance."""
        if frames.dim() != 4 or frames.shape[1] != self.config.in_channels or len(frames) == 0:
            raise ValueError(f"fit needs (N, {self.config.in_channels}, H, W) frames, got {tuple(frames.shape)}")
        frames = frames.float()
        self.shift.copy_(frames.mean(dim=(0, 2, 3)))
        std = (frames - self.shift.view(1, -1, 1, 1)).std().item()
        self.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
        return self


def downsampling_factor(vae) -> int:
    """How many pixels one latent position spans, for either autoencoder."""
    if hasattr(vae, "downsampling_factor"):
        return int(vae.downsampling_factor)
    return 2 ** (len(vae.config.block_out_channels) - 1)  # AutoencoderKL: one 2x downsample between levels


def autoencoder_class(path: str) -> str:
    """The class name an autoencoder directory's config.json names ("" when it names none)."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise ModelLoadError(f"{path} is not an autoencoder directory (no config.json)")
    with open(config_file) as fh:
        return json.load(fh).get("_class_name", "")


def load_autoencoder(path: str):
    """An AutoencoderKL or PatchAutoencoder directory (diffusers layout, safetensors), by its config's class."""
    kind = autoencoder_class(path)
    weights = weights_kwargs(path)  # safetensors only, unless the user opted in to a trusted pickle
    if kind == "PatchAutoencoder":
        return PatchAutoencoder.from_pretrained(path, **weights)
    if kind == "AutoencoderKL":
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(path, **weights)
    raise ModelLoadError(f"{path}: unknown autoencoder class {kind!r}; expected AutoencoderKL or PatchAutoencoder")
