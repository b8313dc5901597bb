"""Frame scorers and pair features for LEGO's curation.

Two jobs, each with a model-based and an offline variant:
- an aesthetic score to pick the best of the ±3 frames around each chosen frame
  (:class:`LaionAestheticScorer`: LAION's predictor, a linear/MLP head on L2-normalised CLIP ViT-L/14
  image embeddings; :class:`OfflineQualityScorer`: sharpness and exposure, no weights);
- an image feature whose cosine similarity filters pairs (CLIP image embeddings when a CLIP directory is
  given, else :func:`offline_features`).

Both run on batches of uint8 RGB frames (N, H, W, 3). torch/transformers load only for the CLIP path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from egoframe.errors import InputError, MissingWeightsError
from egoframe.utils.safe_loading import weights_kwargs


def _gray(frames: np.ndarray) -> np.ndarray:
    return frames[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0


class OfflineQualityScorer:
    """Sharpness (variance of the Laplacian) times an exposure term; higher is better.

    Blurred frames (camera motion) and frames that are too dark, too bright or clipped are what makes
    egocentric frames ugly, and both are measurable without a model.
    """

    name = "offline"

    def score(self, frames: np.ndarray) -> np.ndarray:  # (N, H, W, 3) -> (N,)
        gray = _gray(frames)  # (N, H, W) in [0, 1]
        lap = (-4 * gray[:, 1:-1, 1:-1] + gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1]
               + gray[:, 1:-1, :-2] + gray[:, 1:-1, 2:])
        sharpness = lap.reshape(len(frames), -1).var(axis=1)
        mean = gray.reshape(len(frames), -1).mean(axis=1)
        clipped = ((gray < 0.02) | (gray > 0.98)).reshape(len(frames), -1).mean(axis=1)
        exposure = np.clip(1.0 - 2.0 * np.abs(mean - 0.5), 0.0, 1.0) * (1.0 - 0.5 * clipped)
        # log keeps the score in a readable range; +1e-6 so flat frames stay finite.
        return (np.log(sharpness + 1e-6) + np.log(exposure + 1e-3)).astype(np.float64)


def offline_features(frames: np.ndarray, size: int = 32) -> np.ndarray:
    """A weight-free image feature: 32x32 RGB thumbnails, mean-centred per image, L2-normalised.

    Centring makes the cosine a correlation: raw non-negative pixels would give every pair a cosine
    near 1 and leave the [min, max] window no room to separate "nothing happened" from "camera jumped".
    """
    from PIL import Image

    thumbs = np.stack([np.asarray(Image.fromarray(f[..., :3]).resize((size, size), Image.BILINEAR))
                       for f in frames]).astype(np.float32).reshape(len(frames), -1)  # (N, size*size*3)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(thumbs, axis=1, keepdims=True)
    return thumbs / np.maximum(norms, 1e-6)


class ClipImageEmbedder:
    """CLIP image embeddings (projection output, L2-normalised) from a local transformers CLIP directory."""

    def __init__(self, clip_dir: str, device: str = "cpu", batch_size: int = 32):
        if not clip_dir or not os.path.isdir(clip_dir):
            raise MissingWeightsError(
                f"CLIP model directory not found: {clip_dir!r}; provide a local CLIP ViT-L/14 directory "
                "(config.json, model.safetensors, preprocessor_config.json), e.g. a saved openai/clip-vit-large-patch14")
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        weights = weights_kwargs(clip_dir)
        try:
            self.model = CLIPVisionModelWithProjection.from_pretrained(clip_dir, **weights).to(device).eval()
        except (OSError, ValueError) as exc:
            raise MissingWeightsError(f"cannot load a CLIP vision model from {clip_dir}: {exc}") from exc
        try:
            self.processor = CLIPImageProcessor.from_pretrained(clip_dir)
        except (OSError, ValueError):
            # A directory without preprocessor_config.json: use CLIP's published preprocessing at the model's size.
            size = self.model.config.image_size
            self.processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.device = device
        self.batch_size = batch_size
        self._torch = torch

    def embed(self, frames: np.ndarray) -> np.ndarray:  # (N, H, W, 3) -> (N, D)
        torch = self._torch
        out = []
        with torch.no_grad():
            for start in range(0, len(frames), self.batch_size):
                batch = list(frames[start:start + self.batch_size])
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                embeds = self.model(pixel_values=pixels).image_embeds  # (B, D)
                out.append(torch.nn.functional.normalize(embeds.float(), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)


class LaionHead:
    """LAION aesthetic head from a safetensors file: one Linear (``weight``/``bias``) or the published MLP.

    The MLP's state dict names its Linear layers ``layers.{i}.weight``; dropout layers hold no weights,
    so the Linear layers are applied in index order. LAION used no activations between them.
    """

    def __init__(self, path: str):
        if not path or not os.path.isfile(path):
            raise MissingWeightsError(
                f"LAION aesthetic head not found: {path!r}; provide a safetensors file with the linear/MLP head "
                "(e.g. sac+logos+ava1-l14-linearMSE converted to safetensors)")
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if "weight" in tensors:
            self.layers = [(tensors["weight"], tensors.get("bias"))]
        else:
            indices = sorted({int(k.split(".")[-2]) for k in tensors if k.endswith(".weight")})
            prefix = {k.rsplit(".", 2)[0] for k in tensors if k.endswith(".weight")}
            if not indices or len(prefix) != 1:
                raise MissingWeightsError(f"{path} is not a LAION aesthetic head (expected weight/bias or layers.N.weight)")
            (p,) = prefix
            self.layers = [(tensors[f"{p}.{i}.weight"], tensors.get(f"{p}.{i}.bias")) for i in indices]
        self.in_features = self.layers[0][0].shape[1]

    def __call__(self, embeds: np.ndarray) -> np.ndarray:  # (N, D) -> (N,)
        x = embeds.astype(np.float64)
        for weight, bias in self.layers:
            x = x @ weight.T.astype(np.float64) + (0 if bias is None else bias.astype(np.float64))
        return x[:, 0]


class LaionAestheticScorer:
    """LAION aesthetic predictor: CLIP ViT-L/14 image embedding -> linear/MLP head -> score (~1..10)."""

    name = "laion"

    def __init__(self, clip_dir: str, head_path: str, device: str = "cpu"):
        self.head = LaionHead(head_path)
        self.embedder = ClipImageEmbedder(clip_dir, device=device)
        dim = self.embedder.model.config.projection_dim
        if dim != self.head.in_features:
            raise MissingWeightsError(
                f"LAION head {head_path} expects {self.head.in_features}-d CLIP embeddings but {clip_dir} gives {dim}-d")

    def score(self, frames: np.ndarray) -> np.ndarray:
        return self.head(self.embedder.embed(frames))

    def score_and_embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embeds = self.embedder.embed(frames)
        return self.head(embeds), embeds


@dataclass(frozen=True)
class ScorerSpec:
    """What to build in each worker process (the models themselves are not pickled between processes)."""

    scorer: str = "offline"  # "offline" | "laion"
    laion_head: str = ""
    clip_dir: str = ""
    device: str = "cpu"


class FrameJudge:
    """Aesthetic score and similarity feature of frames, built once per process from a :class:`ScorerSpec`."""

    def __init__(self, spec: ScorerSpec):
        if spec.scorer not in ("offline", "laion"):
            raise InputError(f"unknown scorer {spec.scorer!r}: use 'offline' or 'laion'")
        self.spec = spec
        self.laion = LaionAestheticScorer(spec.clip_dir, spec.laion_head, spec.device) if spec.scorer == "laion" else None
        self.offline = OfflineQualityScorer()
        if self.laion is not None:
            self.embedder = self.laion.embedder
        elif spec.clip_dir:
            self.embedder = ClipImageEmbedder(spec.clip_dir, device=spec.device)
        else:
            self.embedder = None
        self.feature_name = "clip" if self.embedder is not None else "offline"

    def aesthetic(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores (N,), CLIP embeddings (N, D) when computed on the way, else None)."""
        if self.laion is not None:
            return self.laion.score_and_embed(frames)
        return self.offline.score(frames), None

    def features(self, frames: np.ndarray) -> np.ndarray:
        if self.embedder is not None:
            return self.embedder.embed(frames)
        return offline_features(frames)


_JUDGES: dict[ScorerSpec, FrameJudge] = {}


def get_judge(spec: ScorerSpec) -> FrameJudge:
    """One judge per spec per process, so a worker loads CLIP once for all its videos."""
    if spec not in _JUDGES:
        _JUDGES[spec] = FrameJudge(spec)
    return _JUDGES[spec]
