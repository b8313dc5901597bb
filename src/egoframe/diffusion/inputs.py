"""The input frame of every editor (LEGO, the baselines, the siblings): the model's working size and the
resizing of what a user passes in. A mixin for a diffusers pipeline holding ``vae`` and ``unet``."""

from __future__ import annotations

import torch
from PIL import Image

from egoframe.errors import InputError
from egoframe.models.autoencoder import downsampling_factor
from egoframe.utils.images import fit_to_resolution, pil_to_tensor, to_rgb


class FrameInputs:
    @property
    def vae_scale_factor(self) -> int:
        return downsampling_factor(self.vae)

    @property
    def resolution(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def prepare_images(self, image, notes: list[str]) -> torch.Tensor:
        """PIL image(s) or a (B, 3, H, W) tensor in [-1, 1] -> (B, 3, R, R) tensor at the model's resolution;
        every resize or conversion is added to ``notes``."""
        if isinstance(image, torch.Tensor):
            if image.dim() != 4 or image.shape[1] != 3:
                raise InputError(f"image tensor must be (B, 3, H, W), got {tuple(image.shape)}")
            if image.shape[-2:] != (self.resolution, self.resolution):
                notes.append(f"image tensor resized from {tuple(image.shape[-2:])} to {self.resolution}px")
                image = torch.nn.functional.interpolate(
                    image.float(), size=(self.resolution,) * 2, mode="bicubic", align_corners=False
                ).clamp(-1, 1)
            return image
        images = [image] if isinstance(image, Image.Image) else list(image)
        if not images or not all(isinstance(im, Image.Image) for im in images):
            raise InputError("image must be a PIL image, a list of PIL images or a (B, 3, H, W) tensor")
        prepared = [
            fit_to_resolution(to_rgb(im, f"image {i}", notes), self.resolution, f"image {i}", notes)
            for i, im in enumerate(images)
        ]
        return pil_to_tensor(prepared)
