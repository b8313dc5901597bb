"""The shipped embedded model: it loads, its outputs come back at the input's size, and one example's output
is pinned (a changed model, sampler or pipeline shows up here)."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from egoframe.pipelines.default import default_model_dir

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "src", "egoframe", "assets", "examples")

# Mean RGB of the 4 x 4 blocks of the example's output (take-cup.png, 4 Euler-a steps, seed 0), measured
# once on the 2-core CPU machine; a different torch build may move values by a few levels.
PINNED_BLOCKS = [
    [[199.4, 211.0, 225.5], [198.4, 209.1, 222.4], [199.6, 210.5, 223.9], [199.7, 210.8, 225.1]],
    [[146.1, 158.0, 173.9], [158.9, 161.5, 163.0], [158.7, 160.3, 164.7], [156.7, 149.2, 162.7]],
    [[154.5, 153.4, 139.0], [146.3, 135.8, 121.7], [164.8, 131.3, 103.4], [138.5, 126.4, 133.4]],
    [[118.3, 103.7, 90.1], [109.2, 98.4, 91.2], [130.9, 112.0, 94.3], [133.4, 112.2, 93.5]],
]


def _generate(steps: int = 4):
    from egoframe.pipelines.loading import load_pipeline

    path = default_model_dir()
    assert path is not None, "the package ships src/egoframe/assets/default-model"
    pipe = load_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(os.path.join(EXAMPLES, "take-cup.png")).convert("RGB")
    out = pipe(image, "take cup", num_inference_steps=steps, image_guidance_scale=1.5, guidance_scale=1.5,
               generator=torch.Generator().manual_seed(0), progress=False)
    return image, out


def _blocks(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    h, w = arr.shape[0] // 4, arr.shape[1] // 4
    return np.array([[arr[i * h:(i + 1) * h, j * w:(j + 1) * w].mean(axis=(0, 1)) for j in range(4)]
                     for i in range(4)])


def test_shipped_model_outputs_at_the_inputs_size_and_is_pinned():
    image, out = _generate()
    frame = out.images[0]
    assert frame.size == image.size == (128, 128)
    assert any("VLLM description" in n for n in out.notes)
    got = _blocks(frame)
    assert np.abs(got - np.array(PINNED_BLOCKS)).max() < 6.0, np.round(got, 1).tolist()
    # not noise, not a flat frame: the output keeps the input's layout
    assert np.abs(got - _blocks(image)).mean() < 25.0


def test_shipped_model_draws_no_doubled_or_detached_arm_on_the_examples():
    """On the six shipped examples (the model's own sampling, seed 0), every generated frame shows as many arms
    as its input or target at most, and no piece of sleeve that does not reach the frame's border (a doubled
    or smeared-off arm): egoframe.evaluation.parts.count_arms, exact on rendered frames."""
    import csv

    from egoframe.evaluation.parts import count_arms
    from egoframe.pipelines.loading import load_pipeline

    pipe = load_pipeline(default_model_dir())
    pipe.set_progress_bar_config(disable=True)
    rows = list(csv.DictReader(open(os.path.join(EXAMPLES, "examples.csv"))))
    frames = [Image.open(os.path.join(EXAMPLES, r["image"])).convert("RGB") for r in rows]
    out = pipe(frames, [r["action"] for r in rows], description=[r["description"] for r in rows],
               generator=[torch.Generator().manual_seed(0) for _ in rows], progress=False)
    wrong = {}
    for row, frame, generated in zip(rows, frames, out.images):
        target = Image.open(os.path.join(EXAMPLES, row["target"])).convert("RGB")
        got = count_arms(generated)
        allowed = max(count_arms(frame).arms, count_arms(target).arms)
        if not got.sleeve_blobs == got.arms <= allowed:
            wrong[row["action"]] = (got, allowed)
    # Known, measured: the model shipped on 2026-12-07 draws a third arm on "put cup" (seed 0). Across world
    # 9008's 200 held-out pairs it draws a doubled or detached arm on 4 frames, the previous model on 5
    # (docs/embedded/LOG.md). Any other example going wrong, or put cup coming right, fails here: update this.
    assert set(wrong) == {"put cup"}, wrong
