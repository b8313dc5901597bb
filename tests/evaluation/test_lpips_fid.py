"""LPIPS and FID networks: torchvision/pytorch-fid file layouts, [-1, 1] inputs, missing-weights errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egoframe.errors import MissingWeightsError, ModelLoadError
from egoframe.evaluation.frechet import frechet_distance_from_features
from egoframe.evaluation.inception import FidFeatureExtractor
from egoframe.evaluation.lpips import Lpips, save_lpips_weights

# torchvision's squeezenet1_1 state-dict keys (features part), written out so a naming slip fails here.
TORCHVISION_SQUEEZENET11_FEATURE_KEYS = ["features.0.weight", "features.0.bias"] + [
    f"features.{i}.{part}.{p}" for i in (3, 4, 6, 7, 9, 10, 11, 12)
    for part in ("squeeze", "expand1x1", "expand3x3") for p in ("weight", "bias")]


def _images(seed, n=3, size=48):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def squeeze_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = Lpips.build("squeeze")
    for lin in model.lins:
        torch.nn.init.uniform_(lin[1].weight, 0.0, 1.0)  # real heads are non-negative
    folder = tmp_path_factory.mktemp("lpips")
    # the torchvision file also carries the classifier, which LPIPS must ignore
    state = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(1000, 512, 1, 1)
    state["classifier.1.bias"] = torch.zeros(1000)
    torch.save(state, folder / "squeezenet1_1-b8a52dc0.pth")
    torch.save({f"lin{i}.model.1.weight": lin[1].weight.detach().clone() for i, lin in enumerate(model.lins)},
               folder / "squeeze.pth")
    return folder, model


def test_squeezenet_keys_match_torchvision_layout():
    model = Lpips.build("squeeze")
    assert sorted(f"features.{k}" for k in model.features.state_dict()) == sorted(TORCHVISION_SQUEEZENET11_FEATURE_KEYS)
    assert [tuple(l[1].weight.shape) for l in model.lins][:2] == [(1, 64, 1, 1), (1, 128, 1, 1)]


def test_lpips_loads_usual_files_and_scores(squeeze_dir):
    folder, model = squeeze_dir
    lpips = Lpips.from_dir(folder, "squeeze")
    a, b = _images(0), _images(1)
    scores = lpips(a, b)
    assert scores.shape == (3,) and np.all(scores > 0)
    assert np.allclose(lpips(a, a), 0.0, atol=1e-7)
    assert np.allclose(lpips(b, a), scores, rtol=1e-5)  # symmetric
    # uint8 and float [0, 1] give the same distances
    assert np.allclose(lpips([x / 255.0 for x in a], [x / 255.0 for x in b]), scores, rtol=1e-5)


def test_lpips_formula_by_hand(squeeze_dir):
    """Recompute LPIPS from the tapped features: unit-normalise over channels, weight, spatial mean, sum."""
    folder, model = squeeze_dir
    lpips = Lpips.from_dir(folder, "squeeze")
    a, b = _images(2, n=1), _images(3, n=1)
    x = torch.from_numpy(a[0]).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # [-1, 1] as the paper wants
    y = torch.from_numpy(b[0]).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    with torch.no_grad():
        fx, fy = model.tapped((x - shift) / scale), model.tapped((y - shift) / scale)
        total = 0.0
        for lin, u, v in zip(model.lins, fx, fy):
            u = u / (u.norm(dim=1, keepdim=True) + 1e-10)
            v = v / (v.norm(dim=1, keepdim=True) + 1e-10)
            w = lin[1].weight.view(1, -1, 1, 1)
            total += float(((u - v) ** 2 * w).sum(dim=1).mean())
        fed_01 = float(model((x + 1) / 2, (y + 1) / 2)[0])  # what the public LEGO code did
    assert lpips(a, b)[0] == pytest.approx(total, rel=1e-5)
    assert lpips(a, b)[0] != pytest.approx(fed_01, rel=1e-3)  # [0, 1] inputs give another number


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_other_backbones_round_trip(tmp_path, net):
    torch.manual_seed(1)
    model = Lpips.build(net)
    save_lpips_weights(model, tmp_path)
    lpips = Lpips.from_dir(tmp_path, net)
    a, b = _images(4, n=2, size=64), _images(5, n=2, size=64)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 127.5 - 1,
                         torch.from_numpy(np.stack(b)).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    assert np.allclose(lpips(a, b), expected, rtol=1e-5)


def test_lpips_missing_weights(tmp_path, squeeze_dir):
    with pytest.raises(MissingWeightsError, match=r"squeezenet1_1-\*\.pth.*squeeze\.pth"):
        Lpips.from_dir(None, "squeeze")
    with pytest.raises(MissingWeightsError, match=r"lacks alexnet-\*\.pth and alex\.pth"):
        Lpips.from_dir(tmp_path, "alex")
    folder, _ = squeeze_dir
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, tmp_path / "squeeze.pth")
    (tmp_path / "squeezenet1_1-x.pth").write_bytes((folder / "squeezenet1_1-b8a52dc0.pth").read_bytes())
    with pytest.raises(ModelLoadError, match="missing 6 keys"):
        Lpips.from_dir(tmp_path, "squeeze")


class OpaqueConfig:
    """Stands for the pickled config object real research checkpoints carry."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": {"x": torch.ones(1)}, "config": OpaqueConfig()}, tmp_path / "squeeze.pth")
    from egoframe.evaluation.weights import load_state_dict

    with pytest.raises(ModelLoadError, match="weights_only=True.*OpaqueConfig"):
        load_state_dict(tmp_path / "squeeze.pth", "test")


def test_fid_extractor_and_distance(fid_file):
    extractor = FidFeatureExtractor.from_file(fid_file, resolution=75)
    a, b = _images(6, n=4, size=40), _images(7, n=4, size=40)
    fa, fb = extractor.features(a), extractor.features(b)
    assert fa.shape == (4, 2048) and fa.dtype == np.float64
    # the resizer is PIL bicubic to the network resolution, then [-1, 1]
    batch = extractor.preprocess(a[:1])
    assert tuple(batch.shape) == (1, 3, 75, 75) and float(batch.min()) < -0.5 and float(batch.max()) <= 1.0
    assert frechet_distance_from_features(fa, fa) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance_from_features(fa, fb) > 0


def test_fid_missing_and_wrong_weights(tmp_path):
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth"):
        FidFeatureExtractor.from_file(None)
    with pytest.raises(MissingWeightsError, match="file not found"):
        FidFeatureExtractor.from_file(tmp_path / "nope.pth")
    torch.save({"fc.weight": torch.zeros(1000, 2048)}, tmp_path / "inception_v3_google.pth")
    with pytest.raises(ModelLoadError, match="torchvision's ImageNet"):
        FidFeatureExtractor.from_file(tmp_path / "inception_v3_google.pth")
