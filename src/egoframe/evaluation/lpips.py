"""LPIPS (Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018), version 0.1: SqueezeNet 1.1, AlexNet or VGG-16 features + learned linear heads.

    d(x, y) = sum_l mean_{h,w} || w_l * (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|) ||^2

Inputs of the network are in [-1, 1] and are shifted/scaled by the ScalingLayer constants of the paper's
release. The public LEGO evaluation fed images in [0, 1], which shifts every activation; here every image
goes through :func:`egoframe.evaluation.images.to_float01` and then ``2 x - 1``, so that cannot happen.

The backbones are written here (no torchvision) with torchvision's parameter names (``features.0.weight``,
``features.3.squeeze.weight`` ...), so the usual ImageNet files load as they are:
``squeezenet1_1-b8a52dc0.pth``, ``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth`` (or ``.safetensors``).
The heads are the lpips v0.1 files ``squeeze.pth`` / ``alex.pth`` / ``vgg.pth`` with keys
``lin{i}.model.1.weight`` of shape (1, C_i, 1, 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation.images import ImageLike, to_float01
from egoframe.evaluation.weights import find_file, load_into, load_state_dict


@dataclass(frozen=True)
class LpipsNet:
    name: str  # lpips' name: squeeze | alex | vgg
    torchvision_name: str
    backbone_patterns: tuple[str, ...]
    channels: tuple[int, ...]  # channels of each tapped layer (= lin heads)


NETS = {
    "squeeze": LpipsNet("squeeze", "squeezenet1_1", ("squeezenet1_1*.safetensors", "squeezenet1_1*.pth"),
                        (64, 128, 256, 384, 384, 512, 512)),
    "alex": LpipsNet("alex", "alexnet", ("alexnet*.safetensors", "alexnet*.pth"), (64, 192, 384, 256, 256)),
    "vgg": LpipsNet("vgg", "vgg16", ("vgg16*.safetensors", "vgg16-*.pth", "vgg16.pth"), (64, 128, 256, 512, 512)),
}
ALIASES = {"squeezenet": "squeeze", "alexnet": "alex", "vgg16": "vgg"}

# ScalingLayer of the LPIPS release: per-channel shift and scale applied to [-1, 1] inputs.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _build_backbone(net: str):
    """``features`` Sequential with torchvision's indices, and the slice ends after each tapped ReLU."""
    from torch import nn

    def conv(cin, cout, k, stride=1, pad=0):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)

    relu = lambda: nn.ReLU(inplace=False)  # noqa: E731  (in-place would overwrite tapped activations)
    if net == "alex":
        layers = [conv(3, 64, 11, 4, 2), relu(), nn.MaxPool2d(3, 2), conv(64, 192, 5, pad=2), relu(),
                  nn.MaxPool2d(3, 2), conv(192, 384, 3, pad=1), relu(), conv(384, 256, 3, pad=1), relu(),
                  conv(256, 256, 3, pad=1), relu(), nn.MaxPool2d(3, 2)]
        taps = (2, 5, 8, 10, 12)  # after relu1..relu5
    elif net == "vgg":
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        layers, cin = [], 3
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [conv(cin, item, 3, pad=1), relu()]
                cin = item
        taps = (4, 9, 16, 23, 30)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    elif net == "squeeze":
        layers = [conv(3, 64, 3, 2), relu(), nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(64, 16, 64), _Fire(128, 16, 64),
                  nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(128, 32, 128), _Fire(256, 32, 128),
                  nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(256, 48, 192), _Fire(384, 48, 192), _Fire(384, 64, 256),
                  _Fire(512, 64, 256)]
        taps = (2, 5, 8, 10, 11, 12, 13)
    else:
        raise InputError(f"unknown LPIPS backbone {net!r}: use squeeze, alex or vgg")
    return nn.Sequential(*layers), taps


def _fire_module():
    from torch import nn

    class Fire(nn.Module):
        """SqueezeNet fire module (Iandola et al. 2016): 1x1 squeeze, then parallel 1x1 and 3x3 expands."""

        def __init__(self, cin: int, squeeze: int, expand: int):
            super().__init__()
            self.squeeze = nn.Conv2d(cin, squeeze, 1)
            self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
            self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

        def forward(self, x):
            import torch

            x = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], dim=1)

    return Fire


def _Fire(cin, squeeze, expand):  # noqa: N802
    return _fire_module()(cin, squeeze, expand)


def _lpips_module():
    import torch
    from torch import nn

    class LpipsModel(nn.Module):
        def __init__(self, net: str):
            super().__init__()
            self.net_name = net
            self.features, self.taps = _build_backbone(net)
            # lpips v0.1 layout: lin{i}.model = Sequential(Dropout, Conv2d(C, 1, 1, bias=False))
            self.lins = nn.ModuleList(
                nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False)) for c in NETS[net].channels)
            self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

        def tapped(self, x):  # x: (B, 3, H, W) in [-1, 1]
            out, start = [], 0
            for end in self.taps:
                for layer in self.features[start:end]:
                    x = layer(x)
                out.append(x)
                start = end
            return out

        def forward(self, x, y):  # (B, 3, H, W) each, in [-1, 1] -> (B,)
            feats_x = self.tapped((x - self.shift) / self.scale)
            feats_y = self.tapped((y - self.shift) / self.scale)
            total = 0.0
            for lin, fx, fy in zip(self.lins, feats_x, feats_y):
                diff = (_unit(fx) - _unit(fy)) ** 2  # (B, C_l, H_l, W_l)
                total = total + lin(diff).mean(dim=(2, 3))  # spatial average -> (B, 1)
            return total.view(-1)

    return LpipsModel


def spatial_lpips(lpips: "Lpips", generated: ImageLike, reference: ImageLike):
    """LPIPS' spatial map, (H, W) float64 at the image size: each tapped layer's weighted squared difference of
    unit-normalised features, upsampled bilinearly (align_corners False) and summed over layers (Zhang et al.,
    CVPR 2018, the spatial variant). Its mean over all pixels is close to, not equal to, :meth:`Lpips.__call__`
    (which averages each layer at its own size). Inputs go to [-1, 1] as in ``__call__``."""
    import torch
    import torch.nn.functional as F

    model = lpips.model
    x = _to_tensor([generated], "generated").to(lpips.device)  # (1, 3, H, W)
    y = _to_tensor([reference], "reference").to(lpips.device)
    if x.shape != y.shape:
        raise InputError(f"image sizes differ: generated {tuple(x.shape[-2:])} vs reference {tuple(y.shape[-2:])}")
    height, width = x.shape[-2:]
    with torch.no_grad():
        feats_x = model.tapped((x - model.shift) / model.scale)
        feats_y = model.tapped((y - model.shift) / model.scale)
        total = torch.zeros(1, 1, height, width, device=x.device)
        for lin, fx, fy in zip(model.lins, feats_x, feats_y):
            layer = lin((_unit(fx) - _unit(fy)) ** 2)  # (1, 1, h_l, w_l)
            total = total + F.interpolate(layer, size=(height, width), mode="bilinear", align_corners=False)
    return total[0, 0].double().cpu().numpy()


def _unit(features, eps: float = 1e-10):
    """Unit-normalise along channels, as the LPIPS release does (eps added to the norm)."""
    norm = (features ** 2).sum(dim=1, keepdim=True).sqrt()
    return features / (norm + eps)


class Lpips:
    """LPIPS distance with real weights; build it with :meth:`from_files` or :meth:`from_dir`."""

    def __init__(self, model, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.device = device
        self.net = model.net_name

    @classmethod
    def build(cls, net: str = "squeeze"):
        """An untrained model in eval mode (for tests and for loading a state dict yourself)."""
        net = ALIASES.get(net, net)
        if net not in NETS:
            raise InputError(f"unknown LPIPS backbone {net!r}: use squeeze, alex or vgg")
        return _lpips_module()(net).eval()

    @classmethod
    def from_files(cls, backbone: str | os.PathLike, heads: str | os.PathLike, net: str = "squeeze",
                   device: str = "cpu") -> "Lpips":
        """Load torchvision-layout ImageNet ``backbone`` weights and lpips v0.1 ``heads``."""
        model = cls.build(net)
        net = model.net_name
        backbone_state = load_state_dict(backbone, f"LPIPS {net} backbone")
        # torchvision files also hold the classifier; only ``features.*`` belong to LPIPS.
        features = {k[len("features."):]: v for k, v in backbone_state.items() if k.startswith("features.")}
        load_into(model.features, features, f"LPIPS {net} backbone (torchvision {NETS[net].torchvision_name})", backbone)
        head_state = load_state_dict(heads, f"LPIPS {net} linear heads")
        renamed = {}
        for key, value in head_state.items():  # lin{i}.model.1.weight -> {i}.1.weight
            if key.startswith("lin") and ".model." in key:
                index, rest = key[3:].split(".model.", 1)
                renamed[f"{index}.{rest}"] = value
            else:
                renamed[key] = value
        load_into(model.lins, renamed, f"LPIPS {net} linear heads (lpips v0.1 {net}.pth)", heads)
        return cls(model, device)

    @classmethod
    def from_dir(cls, folder: str | os.PathLike | None, net: str = "squeeze", device: str = "cpu") -> "Lpips":
        """Find both files in one folder: ``<torchvision name>*.pth|safetensors`` and ``<net>.pth|safetensors``."""
        net = ALIASES.get(net, net)
        if net not in NETS:
            raise InputError(f"unknown LPIPS backbone {net!r}: use squeeze, alex or vgg")
        spec = NETS[net]
        need = (f"LPIPS-{net} needs a folder (--lpips-weights) holding the torchvision ImageNet weights "
                f"{spec.torchvision_name}-*.pth (or .safetensors) and the lpips v0.1 head {net}.pth")
        if folder is None or not Path(folder).is_dir():
            raise MissingWeightsError(f"{need}; got {folder if folder is not None else 'none'}")
        backbone = find_file(folder, spec.backbone_patterns)
        heads = find_file(folder, (f"{net}.safetensors", f"{net}.pth", f"lpips_{net}*.safetensors", f"lpips_{net}*.pth"))
        missing = [what for what, found in ((f"{spec.torchvision_name}-*.pth", backbone), (f"{net}.pth", heads))
                   if found is None]
        if missing:
            raise MissingWeightsError(f"{need}; {folder} lacks {' and '.join(missing)}")
        return cls.from_files(backbone, heads, net=net, device=device)

    def __call__(self, generated: Sequence[ImageLike], reference: Sequence[ImageLike], batch_size: int = 16) -> np.ndarray:
        """Per-pair distances (N,) for images in the documented range (uint8 or float [0, 1])."""
        import torch

        if len(generated) != len(reference):
            raise InputError(f"LPIPS needs pairs: {len(generated)} generated vs {len(reference)} reference images")
        scores = []
        for start in range(0, len(generated), batch_size):
            gen = _to_tensor(generated[start:start + batch_size], "generated")
            ref = _to_tensor(reference[start:start + batch_size], "reference")
            if gen.shape != ref.shape:
                raise InputError(f"LPIPS image sizes differ: {tuple(gen.shape[2:])} vs {tuple(ref.shape[2:])}")
            with torch.no_grad():
                scores.append(self.model(gen.to(self.device), ref.to(self.device)).double().cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0)


def _to_tensor(images: Sequence[ImageLike], name: str):
    """Images in the documented [0, 1] convention -> (B, 3, H, W) float32 in [-1, 1] (LPIPS' input range)."""
    import torch

    arrays = [to_float01(image, name) for image in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"LPIPS batch mixes image sizes {sorted(shapes)}")
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return batch * 2.0 - 1.0


def save_lpips_weights(model, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write a model's weights in the usual two-file layout (for tests and for re-exporting)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = NETS[model.net_name]
    backbone = folder / f"{spec.torchvision_name}-egoframe.safetensors"
    heads = folder / f"{model.net_name}.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in model.features.state_dict().items()}, str(backbone))
    save_file({f"lin{k.split('.', 1)[0]}.model.{k.split('.', 1)[1]}": v.contiguous()
               for k, v in model.lins.state_dict().items()}, str(heads))
    return backbone, heads
