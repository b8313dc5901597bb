"""Local Hugging Face model directories for metrics: presence checks and the image preprocessing.

Image preprocessing is done here from the directory's ``preprocessor_config.json`` rather than by a
transformers image processor, whose default backend needs torchvision and whose details change between
releases. The steps are those of the CLIP / BiT / ViT / BLIP processors: resize (shortest edge, or to an exact
height x width) with the configured PIL filter, centre crop, x / 255, normalise with the stored mean and std.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from egoframe.errors import MissingWeightsError, ModelLoadError
from egoframe.evaluation.images import ImageLike, to_pil
from egoframe.utils.safe_loading import weights_kwargs

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")


def require_dir(path: str | os.PathLike | None, what: str, example: str, flag: str,
                needs_tokenizer: bool = False, needs_preprocessor: bool = False) -> Path:
    """The directory, or a :class:`MissingWeightsError` naming exactly the files and the flag to provide."""
    wanted = ["config.json", "model.safetensors"]
    if needs_tokenizer:
        wanted.append("tokenizer files")
    if needs_preprocessor:
        wanted.append("preprocessor_config.json")
    need = (f"{what} needs a local {example} directory in the Hugging Face layout ({', '.join(wanted)}): "
            f"pass {flag} DIR")
    if path is None:
        raise MissingWeightsError(need)
    folder = Path(path)
    if not folder.is_dir():
        raise MissingWeightsError(f"{need}; {folder} is not a directory")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors")
    if needs_tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.json/vocab.txt)")
    if needs_preprocessor and not (folder / "preprocessor_config.json").is_file():
        missing.append("preprocessor_config.json")
    if missing:
        raise MissingWeightsError(f"{need}; {folder} lacks {', '.join(missing)}")
    return folder


def load_pretrained(cls, folder: Path, what: str):
    """``cls.from_pretrained(folder)`` from safetensors (EGOFRAME_ALLOW_PICKLE=1: a trusted .bin too)."""
    weights = weights_kwargs(folder)
    try:
        model = cls.from_pretrained(str(folder), **weights)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise ModelLoadError(f"{what}: cannot load {cls.__name__} from {folder}: {first}") from None
    return model.eval()


class ImagePreprocessor:
    """resize -> centre crop -> [0, 1] -> normalise, as configured in ``preprocessor_config.json``."""

    def __init__(self, config: dict):
        self.config = config
        self.do_resize = config.get("do_resize", True)
        self.size = config.get("size", 224)
        self.do_center_crop = config.get("do_center_crop", False)
        crop = config.get("crop_size", self.size)
        self.crop = (crop, crop) if isinstance(crop, int) else (crop.get("height"), crop.get("width"))
        self.resample = Image.Resampling(config.get("resample", Image.Resampling.BICUBIC))
        self.mean = np.asarray(config.get("image_mean", (0.5, 0.5, 0.5)), dtype=np.float32)
        self.std = np.asarray(config.get("image_std", (0.5, 0.5, 0.5)), dtype=np.float32)
        self.do_normalize = config.get("do_normalize", True)
        self.rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> "ImagePreprocessor":
        path = Path(folder) / "preprocessor_config.json"
        try:
            return cls(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from None

    def _resize(self, image: Image.Image) -> Image.Image:
        size = self.size
        if isinstance(size, dict) and "shortest_edge" in size:
            size = size["shortest_edge"]
        if isinstance(size, int):
            width, height = image.size
            short, long = (width, height) if width <= height else (height, width)
            new_long = int(size * long / short)
            target = (size, new_long) if width <= height else (new_long, size)
        else:
            target = (size["width"], size["height"])
        return image.resize(target, self.resample) if image.size != target else image

    def __call__(self, images: Sequence[ImageLike]):
        """Images -> (B, 3, H, W) float32 tensor."""
        import torch

        arrays = []
        for image in images:
            pil = to_pil(image)
            if self.do_resize:
                pil = self._resize(pil)
            if self.do_center_crop and self.crop[0]:
                height, width = self.crop
                left = int(round((pil.width - width) / 2.0))
                top = int(round((pil.height - height) / 2.0))
                pil = pil.crop((left, top, left + width, top + height))
            array = np.asarray(pil, dtype=np.float32) * self.rescale
            if self.do_normalize:
                array = (array - self.mean) / self.std
            arrays.append(array)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def cosine_rows(a, b):
    """Row-wise cosine similarity of two (N, D) tensors -> float64 numpy (N,)."""
    import torch

    a = torch.nn.functional.normalize(a.double(), dim=-1)
    b = torch.nn.functional.normalize(b.double(), dim=-1)
    return (a * b).sum(dim=-1).cpu().numpy()
