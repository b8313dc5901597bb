"""FID: Inception-v3 pool3 features (2048-d) of the "FID Inception" network, then the Fréchet distance.

The network is the TensorFlow Inception graph of Heusel et al. (NeurIPS 2017) as ported to PyTorch by
pytorch-fid, written here without torchvision. It differs from torchvision's ImageNet Inception-v3 in four
places, all reproduced: average pools in Mixed_5*, Mixed_6b-e and Mixed_7b do not count padding
(``count_include_pad=False``), and Mixed_7c's pool branch uses a 3x3 max pool. Parameter names follow
torchvision (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean`` ...), so the usual FID
weights file ``pt_inception-2015-12-05-6726825d.pth`` (or a safetensors copy) loads as is.

Resizer (one for every method and the references): the 8-bit RGB image is resized to 299 x 299 with PIL
bicubic (antialiased) -- the choice of clean-fid (Parmar et al., CVPR 2022), since bilinear resizing
without antialiasing (the TF/pytorch-fid default on tensors) aliases. Values then go to [-1, 1] (2 x - 1).
FID depends on the number of images: compare methods only at the same n (the runner enforces it).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from egoframe.errors import MissingWeightsError, ModelLoadError
from egoframe.evaluation.frechet import frechet_distance_from_features
from egoframe.evaluation.images import ImageLike, to_pil
from egoframe.evaluation.weights import load_into, load_state_dict

FID_RESOLUTION = 299
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048


def _modules():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, kernel, stride=1, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)  # TF Inception's epsilon

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg3(x):  # 3x3/1 average pool that ignores padding (TF semantics)
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class InceptionA(nn.Module):  # Mixed_5b/c/d -> 224 + pool_features channels
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, 1)
            self.branch5x5_1 = BasicConv2d(cin, 48, 1)
            self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, 1)

        def forward(self, x):
            return torch.cat([
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(avg3(x)),
            ], 1)

    class InceptionB(nn.Module):  # Mixed_6a: 288 -> 768, stride 2
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

        def forward(self, x):
            return torch.cat([
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ], 1)

    class InceptionC(nn.Module):  # Mixed_6b-e: 768 -> 768, factorised 7x7
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 192, 1)
            self.branch7x7_1 = BasicConv2d(cin, c7, 1)
            self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(cin, 192, 1)

        def forward(self, x):
            dbl = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                dbl = layer(dbl)
            return torch.cat([
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                dbl,
                self.branch_pool(avg3(x)),
            ], 1)

    class InceptionD(nn.Module):  # Mixed_7a: 768 -> 1280, stride 2
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, 1)
            self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

        def forward(self, x):
            seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)

    class InceptionE(nn.Module):  # Mixed_7b/c -> 2048; pool_kind: "avg" (7b) or "max" (7c, FID graph)
        def __init__(self, cin, pool_kind):
            super().__init__()
            self.pool_kind = pool_kind
            self.branch1x1 = BasicConv2d(cin, 320, 1)
            self.branch3x3_1 = BasicConv2d(cin, 384, 1)
            self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, 1)

        def forward(self, x):
            three = self.branch3x3_1(x)
            dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pooled = avg3(x) if self.pool_kind == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
            return torch.cat([
                self.branch1x1(x),
                torch.cat([self.branch3x3_2a(three), self.branch3x3_2b(three)], 1),
                torch.cat([self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl)], 1),
                self.branch_pool(pooled),
            ], 1)

    class FidInceptionV3(nn.Module):
        """Inception-v3 up to the 2048-d pool3 layer (the logits layer ``fc`` is kept only for loading)."""

        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
            self.Mixed_5b = InceptionA(192, 32)
            self.Mixed_5c = InceptionA(256, 64)
            self.Mixed_5d = InceptionA(288, 64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, 128)
            self.Mixed_6c = InceptionC(768, 160)
            self.Mixed_6d = InceptionC(768, 160)
            self.Mixed_6e = InceptionC(768, 192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280, "avg")
            self.Mixed_7c = InceptionE(2048, "max")
            self.fc = nn.Linear(2048, 1008)  # 1008 TF classes; unused for FID

        def forward(self, x):  # (B, 3, H, W) in [-1, 1] -> (B, 2048)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, 3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, 3, stride=2)
            for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                         "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
                x = getattr(self, name)(x)
            return F.adaptive_avg_pool2d(x, 1).flatten(1)

    return FidInceptionV3


def build_fid_inception():
    """An untrained FID Inception (for tests and exports); use :meth:`FidFeatureExtractor.from_file` to score."""
    return _modules()()


class FidFeatureExtractor:
    """pool3 features of images, with the one documented resizer."""

    def __init__(self, model, device: str = "cpu", resolution: int = FID_RESOLUTION):
        self.model = model.eval().to(device)
        self.device = device
        self.resolution = resolution

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, device: str = "cpu",
                  resolution: int = FID_RESOLUTION) -> "FidFeatureExtractor":
        if path is None:
            raise MissingWeightsError(f"FID needs the FID Inception weights file {FID_WEIGHTS_NAME} "
                                      "(pytorch-fid's TF-ported Inception-v3; or a .safetensors copy): pass --inception FILE")
        state = load_state_dict(path, "FID Inception")
        fc = state.get("fc.weight")
        if fc is not None and fc.shape[0] == 1000:
            raise ModelLoadError(f"{path} is torchvision's ImageNet Inception-v3 (1000 classes), not the FID "
                                 f"Inception ({FID_WEIGHTS_NAME}, 1008 classes): FID values would not be comparable")
        model = build_fid_inception()
        load_into(model, state, "FID Inception", path, ignore_prefixes=("AuxLogits.",))
        return cls(model, device, resolution)

    def preprocess(self, images: Sequence[ImageLike]):
        """8-bit RGB -> PIL bicubic to resolution^2 -> float in [-1, 1], (B, 3, R, R)."""
        import torch

        arrays = []
        for image in images:
            pil = to_pil(image, "FID image")
            if pil.size != (self.resolution, self.resolution):
                pil = pil.resize((self.resolution, self.resolution), Image.Resampling.BICUBIC)
            arrays.append(np.asarray(pil, dtype=np.float32) / 255.0)
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return batch * 2.0 - 1.0

    def features(self, images: Sequence[ImageLike], batch_size: int = 32) -> np.ndarray:
        """(N, 2048) float64 pool3 features."""
        import torch

        out = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocess(images[start:start + batch_size]).to(self.device)
            with torch.no_grad():
                out.append(self.model(batch).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def fid_from_features(generated: np.ndarray, reference: np.ndarray) -> float:
    """FID of two feature sets (Heusel et al. 2017, Eq. 6), float64."""
    return frechet_distance_from_features(generated, reference)
