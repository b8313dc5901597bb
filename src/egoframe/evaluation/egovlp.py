"""EgoVLP and EgoVLP+ (LEGO Table 1): the Frozen-in-Time video-text model of EgoVLP.

Lin et al., "Egocentric Video-Language Pretraining", NeurIPS 2022, built on Bain et al., "Frozen in Time",
ICCV 2021: a ViT-B/16 "SpaceTimeTransformer" video encoder with divided attention (each block: temporal
attention, then spatial attention, both letting CLS attend to every token) + a DistilBERT text encoder,
each projected to a 256-d joint space (video: Linear; text: ReLU then Linear on the [CLS] hidden state).

- EgoVLP score  = cos(video feature of the generated frame repeated as a clip, text feature of the action label)
- EgoVLP+ score = cos(video feature of the generated clip, video feature of the ground-truth clip)

A frame is repeated as a clip of 4 frames (Ego4D) or 16 (EPIC-KITCHENS), as in REFERENCE.md. Each frame is
the image's central square resized to the model's 224 px (PIL bicubic), scaled to [0, 1] and normalised with
the ImageNet mean/std of EgoVLP's video transforms.

Weights: the public ``egovlp.pth`` is a pickle holding ``state_dict`` plus a pickled training config object;
:func:`convert_egovlp_checkpoint` turns it into ``egovlp.safetensors`` with ``torch.load(weights_only=True)``
and says what to do when that refuses the pickled config. Parameter names are those of the public
checkpoint without the DataParallel ``module.`` prefix (``video_model.blocks.0.timeattn.qkv.weight``,
``text_model.transformer.layer.0.attention.q_lin.weight``, ``txt_proj.1.weight``, ``vid_proj.0.weight``).
A checkpoint trained with fewer frames than the clip gets its temporal embedding zero-padded (the public
code's ``load_temporal_fix='zeros'``); one with more is truncated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from egoframe.errors import InputError, MissingWeightsError, ModelLoadError
from egoframe.evaluation.hf import TOKENIZER_FILES, cosine_rows
from egoframe.evaluation.images import ImageLike, center_square, to_pil
from egoframe.evaluation.weights import load_into, load_state_dict, safetensors_metadata, unsafe_reason

CLIP_FRAMES = {"ego4d": 4, "epic": 16}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_NAME = "egovlp.safetensors"


@dataclass
class EgoVlpConfig:
    image_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_hidden: int = 3072
    num_frames: int = 4
    projection_dim: int = 256
    text_vocab_size: int = 30522
    text_dim: int = 768
    text_layers: int = 6
    text_heads: int = 12
    text_hidden: int = 3072
    text_max_positions: int = 512


def _modules():
    import torch
    from torch import nn

    def attend(q, k, v):  # (G, n_q, d), (G, n_k, d) -> (G, n_q, d); q already scaled
        return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v

    class DividedAttention(nn.Module):
        """Frozen-in-Time attention: CLS attends to all tokens; patch tokens attend within their group
        (same frame for space, same position for time) plus the CLS token."""

        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x, frames, patches, over):  # x: (B, 1 + F*N, D); over: "space" | "time"
            b, tokens, dim = x.shape
            h = self.heads
            q, k, v = (t.reshape(b, tokens, h, dim // h).permute(0, 2, 1, 3).reshape(b * h, tokens, dim // h)
                       for t in self.qkv(x).chunk(3, dim=-1))  # (B*h, T, d) each
            q = q * self.scale
            cls_out = attend(q[:, :1], k, v)  # (B*h, 1, d)

            def grouped(t):  # (B*h, F*N, d) -> (B*h*groups, group_len, d)
                t = t.reshape(b * h, frames, patches, -1)
                if over == "time":
                    t = t.transpose(1, 2)  # group = spatial position, sequence = frames
                return t.reshape(-1, t.shape[2], t.shape[3])

            q_, k_, v_ = grouped(q[:, 1:]), grouped(k[:, 1:]), grouped(v[:, 1:])
            groups = q_.shape[0] // (b * h)
            cls_k = k[:, :1].repeat_interleave(groups, dim=0)
            cls_v = v[:, :1].repeat_interleave(groups, dim=0)
            out = attend(q_, torch.cat([cls_k, k_], 1), torch.cat([cls_v, v_], 1))  # (B*h*groups, len, d)
            out = out.reshape(b * h, groups, out.shape[1], -1)
            if over == "time":
                out = out.transpose(1, 2)  # back to (B*h, F, N, d)
            out = torch.cat([cls_out, out.reshape(b * h, frames * patches, -1)], dim=1)
            out = out.reshape(b, h, tokens, -1).permute(0, 2, 1, 3).reshape(b, tokens, dim)
            return self.proj(out)

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class SpaceTimeBlock(nn.Module):
        def __init__(self, dim, heads, hidden):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = DividedAttention(dim, heads)
            self.timeattn = DividedAttention(dim, heads)
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = Mlp(dim, hidden)
            self.norm3 = nn.LayerNorm(dim, eps=1e-6)

        def forward(self, x, frames, patches):
            after_time = x + self.timeattn(self.norm3(x), frames, patches, "time")
            # The Frozen-in-Time block adds the spatial output to the block input x, not to after_time:
            # the checkpoint was trained this way, so it is kept.
            x = x + self.attn(self.norm1(after_time), frames, patches, "space")
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, patch, dim):
            super().__init__()
            self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    class SpaceTimeTransformer(nn.Module):
        def __init__(self, cfg: EgoVlpConfig):
            super().__init__()
            self.patches_per_frame = (cfg.image_size // cfg.patch_size) ** 2
            self.num_frames = cfg.num_frames
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, self.patches_per_frame + 1, cfg.embed_dim))
            self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, cfg.embed_dim))
            self.blocks = nn.ModuleList(SpaceTimeBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_hidden)
                                        for _ in range(cfg.depth))
            self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
            for param in (self.cls_token, self.pos_embed, self.temporal_embed):
                nn.init.trunc_normal_(param, std=0.02)

        def forward(self, video):  # (B, F, 3, H, W) -> (B, D) CLS feature
            b, frames = video.shape[:2]
            if frames > self.num_frames:
                raise InputError(f"clip of {frames} frames exceeds the model's {self.num_frames}")
            x = self.patch_embed.proj(video.flatten(0, 1)).flatten(2).transpose(1, 2)  # (B*F, N, D)
            x = x.reshape(b, frames * self.patches_per_frame, -1)
            # position: spatial embedding tiled over frames + temporal embedding repeated over patches
            spatial = self.pos_embed[:, 1:].repeat(1, frames, 1)
            temporal = self.temporal_embed[:, :frames].repeat_interleave(self.patches_per_frame, dim=1)
            x = x + spatial + temporal
            cls = self.cls_token.expand(b, -1, -1) + self.pos_embed[:, :1]
            x = torch.cat([cls, x], dim=1)
            for block in self.blocks:
                x = block(x, frames, self.patches_per_frame)
            return self.norm(x)[:, 0]

    class FrozenInTime(nn.Module):
        def __init__(self, cfg: EgoVlpConfig):
            super().__init__()
            from transformers import DistilBertConfig, DistilBertModel

            self.config = cfg
            self.video_model = SpaceTimeTransformer(cfg)
            self.text_model = DistilBertModel(DistilBertConfig(
                vocab_size=cfg.text_vocab_size, dim=cfg.text_dim, n_layers=cfg.text_layers, n_heads=cfg.text_heads,
                hidden_dim=cfg.text_hidden, max_position_embeddings=cfg.text_max_positions))
            self.txt_proj = nn.Sequential(nn.ReLU(), nn.Linear(cfg.text_dim, cfg.projection_dim))
            self.vid_proj = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.projection_dim))

        def encode_video(self, video):  # (B, F, 3, H, W) -> (B, P)
            return self.vid_proj(self.video_model(video))

        def encode_text(self, input_ids, attention_mask):  # -> (B, P), from the [CLS] hidden state
            hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.txt_proj(hidden[:, 0])

    return FrozenInTime


def build_frozen_in_time(config: EgoVlpConfig):
    return _modules()(config).eval()


def config_from_state_dict(state: dict, metadata: dict | None = None, num_frames: int | None = None) -> EgoVlpConfig:
    """Architecture sizes read off the tensors (heads from the file's metadata, else dim / 64 as in ViT-B)."""
    metadata = metadata or {}
    try:
        pos = state["video_model.pos_embed"]
        patch = state["video_model.patch_embed.proj.weight"].shape[-1]
        dim = pos.shape[-1]
        text_dim = state["text_model.embeddings.word_embeddings.weight"].shape[1]
        return EgoVlpConfig(
            image_size=int(math.isqrt(pos.shape[1] - 1)) * patch, patch_size=patch, embed_dim=dim,
            depth=len({k.split(".")[2] for k in state if k.startswith("video_model.blocks.")}),
            num_heads=int(metadata.get("num_heads", max(1, dim // 64))),
            mlp_hidden=state["video_model.blocks.0.mlp.fc1.weight"].shape[0],
            num_frames=num_frames or state["video_model.temporal_embed"].shape[1],
            projection_dim=state["vid_proj.0.weight"].shape[0],
            text_vocab_size=state["text_model.embeddings.word_embeddings.weight"].shape[0], text_dim=text_dim,
            text_layers=len({k.split(".")[3] for k in state if k.startswith("text_model.transformer.layer.")}),
            text_heads=int(metadata.get("text_num_heads", max(1, text_dim // 64))),
            text_hidden=state["text_model.transformer.layer.0.ffn.lin1.weight"].shape[0],
            text_max_positions=state["text_model.embeddings.position_embeddings.weight"].shape[0])
    except KeyError as exc:
        raise ModelLoadError(f"not an EgoVLP (Frozen-in-Time) state dict: no {exc.args[0]}") from None


def _missing_message(path) -> str:
    return (f"EgoVLP needs {WEIGHTS_NAME} (the public EgoVLP checkpoint converted with "
            f"`egoframe convert-egovlp egovlp.pth {WEIGHTS_NAME}`) with the distilbert-base-uncased tokenizer "
            f"(tokenizer.json or vocab.txt) in the same folder: pass --egovlp FILE; got {path or 'none'}")


class EgoVlpScorer:
    """EgoVLP / EgoVLP+ with real weights from a local safetensors file."""

    def __init__(self, model, tokenizer, clip_frames: int, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.clip_frames = clip_frames
        self.device = device

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, clip_frames: int = CLIP_FRAMES["ego4d"],
                  tokenizer_dir: str | os.PathLike | None = None, device: str = "cpu") -> "EgoVlpScorer":
        from transformers import AutoTokenizer

        if path is None:
            raise MissingWeightsError(_missing_message(path))
        path = Path(path)
        if path.is_dir():
            path = path / WEIGHTS_NAME
        if not path.is_file():
            raise MissingWeightsError(_missing_message(path))
        if path.suffix != ".safetensors":
            raise InputError(f"{path}: EgoVLP loads a .safetensors file; convert the public checkpoint first "
                             f"with `egoframe convert-egovlp {path} {path.with_suffix('.safetensors')}`")
        tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else path.parent
        if not any((tokenizer_dir / name).is_file() for name in TOKENIZER_FILES):
            raise MissingWeightsError(f"EgoVLP needs the distilbert-base-uncased tokenizer (tokenizer.json or vocab.txt) "
                                      f"in {tokenizer_dir}")
        state = load_state_dict(path, "EgoVLP")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        config = config_from_state_dict(state, safetensors_metadata(path), num_frames=clip_frames)
        state["video_model.temporal_embed"] = _fit_temporal(state["video_model.temporal_embed"], clip_frames)
        model = build_frozen_in_time(config)
        load_into(model, state, "EgoVLP", path, optional_suffixes=("position_ids", "num_batches_tracked"))
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        return cls(model, tokenizer, clip_frames, device)

    def clips(self, images: Sequence[ImageLike]):
        """Frames -> (B, F, 3, S, S) clips, each frame repeated F times."""
        import torch

        size = self.model.config.image_size
        mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
        frames = []
        for image in images:
            pil = center_square(to_pil(image)).resize((size, size), Image.Resampling.BICUBIC)
            frames.append((np.asarray(pil, dtype=np.float32) / 255.0 - mean) / std)
        batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (B, 3, S, S)
        return batch[:, None].repeat(1, self.clip_frames, 1, 1, 1)

    def video_features(self, images: Sequence[ImageLike], batch_size: int = 8):
        import torch

        out = []
        for start in range(0, len(images), batch_size):
            with torch.no_grad():
                out.append(self.model.encode_video(self.clips(images[start:start + batch_size]).to(self.device)))
        return torch.cat(out)

    def text_features(self, texts: Sequence[str]):
        import torch

        if any(not t.strip() for t in texts):
            raise InputError("EgoVLP needs a non-empty action label for every sample")
        tokens = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            return self.model.encode_text(tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device))

    def egovlp(self, generated: Sequence[ImageLike], actions: Sequence[str]) -> np.ndarray:
        """cos(video(generated clip), text(action label)) per sample."""
        if len(generated) != len(actions):
            raise InputError(f"EgoVLP needs one action per image: {len(generated)} vs {len(actions)}")
        return cosine_rows(self.video_features(generated), self.text_features(actions))

    def egovlp_plus(self, generated: Sequence[ImageLike], reference: Sequence[ImageLike]) -> np.ndarray:
        """cos(video(generated clip), video(ground-truth clip)) per sample."""
        if len(generated) != len(reference):
            raise InputError(f"EgoVLP+ needs pairs: {len(generated)} vs {len(reference)}")
        return cosine_rows(self.video_features(generated), self.video_features(reference))


def _fit_temporal(embed, frames: int):
    import torch

    have = embed.shape[1]
    if have >= frames:
        return embed[:, :frames].clone()
    padded = torch.zeros(embed.shape[0], frames, embed.shape[2], dtype=embed.dtype)
    padded[:, :have] = embed
    return padded


def convert_egovlp_checkpoint(source: str | os.PathLike, target: str | os.PathLike,
                              num_heads: int = 12, text_num_heads: int = 12) -> Path:
    """Public ``egovlp.pth`` (or a plain re-saved state dict) -> ``egovlp.safetensors``, without unpickling code."""
    import torch
    from safetensors.torch import save_file

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise MissingWeightsError(f"EgoVLP checkpoint not found: {source}")
    try:
        loaded = torch.load(str(source), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"{source} cannot be loaded with torch.load(weights_only=True): {unsafe_reason(source, exc)}. "
            "In an environment you trust (e.g. the EgoVLP repository), re-save only the weights with "
            "torch.save(torch.load('egovlp.pth', map_location='cpu')['state_dict'], 'egovlp_state_dict.pth') "
            "and convert that file") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{source} holds no state dict of tensors")
    state = {k.removeprefix("module."): v.contiguous() for k, v in state.items()
             if not k.endswith("position_ids")}
    config_from_state_dict(state)  # fails clearly if this is not a Frozen-in-Time checkpoint
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(target), metadata={"format": "egovlp-frozen-in-time", "num_heads": str(num_heads),
                                            "text_num_heads": str(text_num_heads)})
    return target
