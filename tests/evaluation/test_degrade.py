"""Degradations keep an image readable and its size; garbage frames are what they say."""

from __future__ import annotations

import numpy as np
import pytest

from egoframe.evaluation import degrade


def _image():
    rng = np.random.default_rng(0)
    return (rng.random((32, 32, 3)) * 255).astype(np.uint8)


def test_degradations_keep_shape_and_dtype():
    img, rng = _image(), np.random.default_rng(1)
    for out in (degrade.gaussian_blur(img, 1.0), degrade.jpeg(img, 60), degrade.add_noise(img, 0.02, rng),
                degrade.shift(img, 2, -1), degrade.resample(img, 16), degrade.random_degradation(img, rng)):
        assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(degrade.gaussian_blur(img, 0), img)
    with pytest.raises(ValueError):
        degrade.jpeg(img.astype(np.float32), 60)


def test_shift_moves_pixels_and_repeats_the_edge():
    img = _image()
    moved = degrade.shift(img, 2, 1)  # right 2, down 1
    assert np.array_equal(moved[1:, 2:], img[:-1, :-2])
    assert np.array_equal(moved[0, 2:], img[0, :-2]) and np.array_equal(moved[1:, 0], img[:-1, 0])


def test_noise_has_the_asked_strength():
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = degrade.add_noise(flat, 0.02, np.random.default_rng(0)).astype(float)
    assert abs(noisy.std() / 255 - 0.02) < 0.002


def test_garbage_kinds():
    rng = np.random.default_rng(0)
    frames = [degrade.garbage(rng, 32, like=_image()) for _ in range(40)]
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in frames)
    assert any(len(np.unique(f.reshape(-1, 3), axis=0)) == 1 for f in frames)  # a flat frame among them
