"""The optional change-weighted loss: weights only where the target's latent differs from the input's."""

from __future__ import annotations

import torch

from egoframe.training.config import OptimConfig
from egoframe.training.trainer import change_weights


def test_change_weights_mark_the_edit_and_keep_the_loss_scale():
    x = torch.zeros(2, 4, 8, 8)
    y = x.clone()
    y[0, :, 2, 3] = 4.0  # one changed latent position in sample 0; sample 1 unchanged
    w = change_weights(y, x, change_weight=9.0, scaling=1.0)
    assert w.shape == (2, 1, 8, 8)
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.ones(2))
    assert torch.allclose(w[1], torch.ones(1, 8, 8))  # nothing changed: plain MSE
    high = w[0, 0] > 1.0
    assert high.sum() == 9 and high[1:4, 2:5].all()  # the position and its 3 x 3 border
    assert OptimConfig().change_weight == 0.0  # off unless asked for (the papers' plain MSE)


def test_lr_factor_is_constant_by_default_and_decays_by_cosine_from_decay_start():
    from egoframe.training.config import OptimConfig
    from egoframe.training.trainer import lr_factor

    constant = OptimConfig(max_steps=100, warmup_steps=10)
    assert lr_factor(constant, 0) == 0.1 and lr_factor(constant, 9) == 1.0 and lr_factor(constant, 99) == 1.0
    decayed = OptimConfig(max_steps=100, decay_start=50, final_lr_ratio=0.1)
    assert lr_factor(decayed, 49) == 1.0 and lr_factor(decayed, 50) == 1.0
    assert abs(lr_factor(decayed, 75) - 0.55) < 1e-9  # half way down the cosine
    assert abs(lr_factor(decayed, 100) - 0.1) < 1e-9 and abs(lr_factor(decayed, 500) - 0.1) < 1e-9
    factors = [lr_factor(decayed, s) for s in range(50, 101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))
