"""Masks and the masked metrics of the Reason-Edit protocol (SmartEdit, papers/002 Sec. 4.1, Table 1): load and
binarise a mask, background PSNR / SSIM / LPIPS outside it, and the square crop around it that CLIP scores
with the target phrase."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from egoframe.errors import InputError
from egoframe.evaluation import pixel
from egoframe.evaluation.images import ImageLike, to_float01
from egoframe.evaluation.lpips import spatial_lpips
from egoframe.utils.images import load_image

MASK_THRESHOLD = 0.5  # a mask pixel is "edited region" when its grey value / 255 >= 0.5


def load_mask(path: str | os.PathLike, input_size: tuple[int, int] | None = None, where: str = "") -> Image.Image:
    """A mask file as an 8-bit grey PIL image; its size (W, H) must equal ``input_size`` when given."""
    mask = load_image(path).convert("L")
    if input_size is not None and mask.size != tuple(input_size):
        raise InputError(f"{where}mask {path} is {mask.size[0]}x{mask.size[1]} but its input image is "
                         f"{input_size[0]}x{input_size[1]}; a mask must have its input's size")
    return mask


def binarize_mask(mask: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool "edited region" at ``size`` = (H, W): grey / 255 >= 0.5, resized with nearest neighbour.

    SmartEdit's public script multiplied images by the raw mask / 255 (JPEG ringing makes it non-binary);
    REFERENCE.md asks for a binarised mask. Nearest-neighbour resizing commutes with thresholding.
    """
    if isinstance(mask, np.ndarray):
        array = mask if mask.ndim == 2 else mask[..., 0]
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        elif np.issubdtype(array.dtype, np.floating):
            array = np.round(np.clip(array, 0.0, 1.0) * 255.0)
        mask = Image.fromarray(array.astype(np.uint8), mode="L")
    if mask.mode != "L":
        mask = mask.convert("L")
    binary = Image.fromarray(((np.asarray(mask, dtype=np.float64) / 255.0 >= MASK_THRESHOLD) * 255).astype(np.uint8))
    if binary.size != (size[1], size[0]):
        binary = binary.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(binary) > 0


def fill_foreground(generated: np.ndarray, reference: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """The generated image with the edited region replaced by the reference's pixels (float [0, 1])."""
    return np.where(foreground[..., None], reference, generated)


def _masked_pair(generated: ImageLike, reference: ImageLike, foreground: np.ndarray):
    foreground = np.asarray(foreground, dtype=bool)
    gen = to_float01(generated, "generated")
    ref = to_float01(reference, "reference")
    if gen.shape != ref.shape:
        raise InputError(f"image sizes differ: generated {gen.shape[:2]} vs reference {ref.shape[:2]}")
    if foreground.shape != gen.shape[:2]:
        raise InputError(f"mask size {foreground.shape} differs from the image size {gen.shape[:2]}")
    if foreground.all():
        raise InputError("the mask covers the whole image: there is no background to compare")
    return gen, ref, foreground


def background_psnr(generated: ImageLike, reference: ImageLike, foreground: np.ndarray) -> float:
    """PSNR (peak 1.0) over the pixels outside ``foreground`` only; ``inf`` when they are identical."""
    gen, ref, foreground = _masked_pair(generated, reference, foreground)
    background = ~foreground
    return pixel.psnr_from_mse(float(np.mean((gen[background] - ref[background]) ** 2)))


def background_ssim(generated: ImageLike, reference: ImageLike, foreground: np.ndarray) -> float:
    """Mean SSIM over background pixels (inside the valid window region) of fill_foreground(gen) vs reference.

    Filling the edited region with the reference's pixels keeps the edit itself out of the windows that
    straddle the mask's border, so changing only masked pixels gives 1.
    """
    gen, ref, foreground = _masked_pair(generated, reference, foreground)
    values, valid = pixel.ssim_map(fill_foreground(gen, ref, foreground), ref)
    region = valid & ~foreground
    if not region.any():
        raise InputError("the background lies entirely within SSIM's 5-pixel image border")
    return float(values[region].mean())


def background_lpips(lpips, generated: ImageLike, reference: ImageLike, foreground: np.ndarray) -> float:
    """Mean of LPIPS' spatial map over background pixels, fill_foreground(gen) vs reference.

    ``lpips`` is an :class:`egoframe.evaluation.lpips.Lpips`. The map is Zhang et al.'s (CVPR 2018) spatial
    variant: each tapped layer's weighted squared difference of unit-normalised features, upsampled
    bilinearly (align_corners False) to the image size, summed over layers. Inputs go to [-1, 1] exactly as
    in :meth:`Lpips.__call__`.
    """
    gen, ref, foreground = _masked_pair(generated, reference, foreground)
    return float(spatial_lpips(lpips, fill_foreground(gen, ref, foreground), ref)[~foreground].mean())


def foreground_crop(image: ImageLike, foreground: np.ndarray) -> np.ndarray:
    """The image cut to the mask's bounding box grown to a square around its centre (kept inside the image).

    A square crop keeps the whole region inside CLIP's centre crop. SmartEdit's public script cut the raw
    box, with its right/bottom row dropped and a non-binarised mask; both are avoided here.
    """
    array = to_float01(image, "generated")
    foreground = np.asarray(foreground, dtype=bool)
    if foreground.shape != array.shape[:2]:
        raise InputError(f"mask size {foreground.shape} differs from the image size {array.shape[:2]}")
    if not foreground.any():
        raise InputError("the mask is empty: there is no edited region to crop")
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = array.shape[:2]
    side = max(bottom - top, right - left)
    side_y, side_x = min(side, height), min(side, width)
    top = int(np.clip(top + (bottom - top - side_y) // 2, 0, height - side_y))
    left = int(np.clip(left + (right - left - side_x) // 2, 0, width - side_x))
    return array[top:top + side_y, left:left + side_x]
