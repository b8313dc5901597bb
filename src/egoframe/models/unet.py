"""Growing a Stable Diffusion UNet's input from 4 to 8 channels (InstructPix2Pix / LEGO, Sec. 3.2).

The UNet sees concat(noisy latent, VAE latent of the input frame). The new input channels start at
zero, so at step 0 the grown UNet computes exactly what the text-to-image UNet computed.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn


def grow_conv_in(unet: UNet2DConditionModel, in_channels: int = 8) -> UNet2DConditionModel:
    """Replace ``unet.conv_in`` with a wider conv: old weights copied, new channels zeroed, bias kept."""
    old = unet.conv_in
    if old.in_channels == in_channels:
        return unet
    if old.in_channels > in_channels:
        raise ValueError(f"cannot shrink conv_in from {old.in_channels} to {in_channels} channels")
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dtype=old.weight.dtype,
        device=old.weight.device,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet
