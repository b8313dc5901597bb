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
    [[199.6, 211.0, 225.1], [197.7, 208.7, 222.9], [199.2, 210.3, 224.4], [199.2, 210.5, 225.2]],
    [[145.7, 157.7, 173.5], [158.6, 161.5, 163.1], [159.8, 161.1, 164.8], [156.7, 149.8, 163.2]],
    [[154.4, 153.1, 138.8], [149.1, 136.1, 123.3], [165.2, 130.1, 101.9], [139.2, 126.4, 133.3]],
    [[119.0, 104.5, 91.2], [109.5, 98.2, 91.9], [132.0, 113.4, 95.5], [134.3, 113.3, 94.8]],
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
    # Measured: the model shipped on 2026-12-08 (attention at 16 x 16) draws every example with the right number
    # of arms, put cup included (the 2026-12-07 model drew a third arm there). Across world 9012's 200 held-out
    # pairs: docs/embedded/LOG.md. Any example going wrong fails here.
    assert not wrong, wrong
