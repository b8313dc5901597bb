"""Reading foreign pickle checkpoints for conversion: tensors only, no code from the file."""

import pytest


class _Hyper:
    def __init__(self):
        self.lr = 1e-4


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        # Unpickled naively, this would create the marker file.
        return (open, (self.marker, "w"))


def test_read_pickle_tensors_runs_no_code_from_the_file(tmp_path):
    import torch

    from egoframe.errors import ModelLoadError
    from egoframe.utils.safe_loading import read_pickle_tensors

    marker = tmp_path / "pwned"
    weights = {"model.diffusion_model.conv.weight": torch.randn(3, 2), "projection_img.bias": torch.arange(4.0)}
    ckpt = {"epoch": 3, "global_step": 10, "state_dict": weights, "hyper_parameters": _Hyper(),
            "callbacks": {"x": _Evil(str(marker))}, "optimizer_states": [{"state": {}}]}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    got = read_pickle_tensors(path)
    assert not marker.exists()  # the file's __reduce__ never ran
    assert set(got) == set(weights) and all(torch.equal(got[k], v) for k, v in weights.items())
    # Without a state_dict, tensors are found under their dotted paths.
    torch.save({"model": {"a": torch.ones(2)}, "b": torch.zeros(1)}, tmp_path / "plain.pt")
    assert set(read_pickle_tensors(tmp_path / "plain.pt")) == {"model.a", "b"}
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a readable torch checkpoint"):
        read_pickle_tensors(tmp_path / "bad.ckpt")
