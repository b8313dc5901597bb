"""Shared fixtures of the evaluation tests."""

from __future__ import annotations

import pytest
import torch

from egoframe.evaluation.inception import build_fid_inception


@pytest.fixture(scope="session")
def fid_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_fid_inception()
    # give BatchNorm real statistics so that random features are not ~constant
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 75, 75) * 2 - 1)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path
