"""A tiny curated data set (cup moves into a hand) with descriptions and a real VLLM embedding cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

COLORS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 200, 60)}


def _frame(cup_xy, hand_x, color, size=32):
    img = np.full((size, size, 3), 150, dtype=np.uint8)
    x, y = cup_xy
    img[y:y + 6, x:x + 6] = COLORS[color]
    img[size - 8:size - 2, hand_x:hand_x + 8] = (230, 180, 150)
    return img


def make_pairs(root: str, n: int = 16, size: int = 32) -> str:
    from PIL import Image

    from egoframe.data.records import ActionRecord, save_records

    os.makedirs(os.path.join(root, "shards"), exist_ok=True)
    records = []
    for i in range(n):
        color = sorted(COLORS)[i % 3]
        hand = ("left", "right")[(i // 3) % 2]
        hand_x = 3 if hand == "left" else 20
        before = _frame((4 + 3 * (i % 5), 6), hand_x, color, size)
        after = _frame((hand_x + 1, size - 12), hand_x, color, size)
        for tag, img in (("in", before), ("tgt", after)):
            Image.fromarray(img).save(os.path.join(root, "shards", f"{i:04d}_{tag}.png"))
        records.append(ActionRecord(
            id=f"p{i:04d}", source="synthetic", action="take cup", verb="take", noun="cup", video_id=f"v{i % 4}",
            width=size, height=size, input_path=f"shards/{i:04d}_in.png", target_path=f"shards/{i:04d}_tgt.png",
            description=f"the person takes the {color} cup with the {hand} hand",
            split="test" if i % 4 == 3 else "train"))
    save_records(records, os.path.join(root, "pairs.parquet"))
    return root


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory):
    return make_pairs(str(tmp_path_factory.mktemp("pairs")))


@pytest.fixture(scope="session")
def vllm_cache(pairs_dir, tmp_path_factory):
    """A real embedding cache made by `build_embedding_cache` with a tiny random LLaVA."""
    from egoframe.vllm.cache import build_embedding_cache
    from egoframe.vllm.embeddings import ExtractionConfig
    from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer

    tokenizer = build_word_tokenizer(["the person takes the red blue green cup with left right hand"])
    vllm = build_tiny_vllm(tokenizer, TinyVllmConfig(image_size=32, patch_size=16, vision_hidden_size=16,
                                                     vision_layers=1, vision_heads=2, text_hidden_size=16,
                                                     text_layers=1, text_heads=2, max_positions=160), seed=0)
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    build_embedding_cache(vllm, pairs_dir, cache_dir, config=ExtractionConfig(max_new_tokens=4), progress=False)
    return cache_dir


def train_config(pairs_dir, out_dir, ablation="lego", cache=None, **optim):
    from egoframe.training.config import parse_config

    return parse_config({
        "data": {"root": pairs_dir, "resolution": 32, "vllm_cache": cache},
        "model": {"ablation": ablation, "tiny": {"unet_channels": [16, 32], "vae_channels": [16, 32],
                                                  "cross_attention_dim": 32, "attention_head_dim": 8}},
        "optim": {"batch_size": 4, "max_steps": 3, "lr": 1e-3, **optim},
        "log": {"out_dir": str(out_dir), "checkpoint_every": 2, "num_samples": 2, "sample_steps": 2},
    })
