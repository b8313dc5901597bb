"""The arm counter behind the doubled-arm check: exact on rendered world frames."""

from __future__ import annotations

import itertools

import numpy as np

from egoframe.evaluation.parts import ArmCount, count_arms
from egoframe.world.render import render_state
from egoframe.world.stream import stream_frames


def test_rendered_frames_show_no_detached_sleeve_and_hidden_hands_no_arm():
    seen = set()
    for frame in itertools.islice(stream_frames(6), 60):
        shown = count_arms(render_state(frame.state, 128))
        assert shown.sleeve_blobs == shown.arms <= 2  # every sleeve piece of a true frame reaches the border
        seen.add(shown.arms)
        for hidden in (("left",), ("right",)):
            one = count_arms(render_state(frame.state, 128, hidden_hands=hidden))
            assert shown.arms - 1 <= one.arms <= shown.arms and one.sleeve_blobs == one.arms
        assert count_arms(render_state(frame.state, 128, hidden_hands=("left", "right"))) == ArmCount(0, 0)
    assert seen >= {1, 2}  # the sample has frames with one and with two arms


def test_a_detached_copy_of_an_arm_is_counted():
    frame = next(f for f in stream_frames(6) if count_arms(render_state(f.state, 128)).arms >= 1)
    image = render_state(frame.state, 128)
    sleeve = np.linalg.norm(image.astype(np.float32) - np.array((52, 60, 90), np.float32), axis=-1) < 30
    ys, xs = np.nonzero(sleeve)
    patch = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1].copy()
    mask = sleeve[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = mask.shape
    h, w = min(h, 40), min(w, 40)
    doubled = image.copy()
    region = doubled[30:30 + h, 44:44 + w]
    region[mask[:h, :w]] = patch[:h, :w][mask[:h, :w]]  # a ghost piece of sleeve in the middle of the frame
    before, after = count_arms(image), count_arms(doubled)
    assert after.sleeve_blobs == before.sleeve_blobs + 1 and after.arms == before.arms
