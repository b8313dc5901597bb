"""Helpers of the VLLM tests: a synthetic curated data set and a tiny LLaVA config (imported by conftest)."""

from __future__ import annotations

import os

import numpy as np

from egoframe.data.records import ActionRecord, Box, save_records

COLORS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 200, 60)}


def synthetic_frame(color: str, hand: str, size: int = 32) -> np.ndarray:
    """A cup of ``color`` on the side of ``hand`` with a skin-coloured hand below it."""
    img = np.full((size, size, 3), 128, dtype=np.uint8)
    x0 = 2 if hand == "left" else size // 2 + 2
    img[4:12, x0:x0 + 8] = COLORS[color]
    img[size - 10:size - 2, x0:x0 + 10] = (230, 180, 150)
    return img


def make_dataset(root: str, n: int = 24, size: int = 32, with_descriptions: bool = True) -> str:
    from PIL import Image

    os.makedirs(os.path.join(root, "frames"), exist_ok=True)
    records = []
    colors = sorted(COLORS)
    for i in range(n):
        color, hand = colors[i % 3], ("left", "right")[(i // 3) % 2]
        path = f"frames/{i:04d}.png"
        Image.fromarray(synthetic_frame(color, hand, size)).save(os.path.join(root, path))
        desc = f"The person takes the {color} cup with the {hand} hand." if with_descriptions else ""
        records.append(ActionRecord(
            id=f"item{i:04d}", source="synthetic", action="take cup", verb="take", noun="cup",
            width=size, height=size, input_path=path, target_path=path, description=desc,
            split="test" if i >= n - 6 else "train",
            boxes=[Box(label=f"{hand}_hand", x0=0, y0=0, x1=4, y1=4, role=f"{hand}_hand"),
                   Box(label=f"{color} cup", x0=4, y0=4, x1=8, y1=8, role="object_of_change")]))
    save_records(records, os.path.join(root, "pairs.parquet"))
    return root


def tiny_config():
    from egoframe.vllm.tiny import TinyVllmConfig

    return TinyVllmConfig(image_size=32, patch_size=8, vision_hidden_size=32, vision_layers=2, vision_heads=2,
                          text_hidden_size=32, text_layers=2, text_heads=2, max_positions=160)
