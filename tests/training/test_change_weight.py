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
