import numpy as np
import pytest

from egoframe.data.curate import CurationConfig, curate
from egoframe.data.records import load_records
from egoframe.data.scoring import FrameJudge, LaionAestheticScorer, OfflineQualityScorer, ScorerSpec, offline_features
from egoframe.errors import MissingWeightsError
from tests.data.conftest import frame_image


def test_offline_scorer_prefers_sharp_and_well_exposed_frames():
    flat = frame_image(5)
    sharp = frame_image(5, sharp=True)
    dark = (sharp * 0.1).astype(np.uint8)
    scores = OfflineQualityScorer().score(np.stack([flat, sharp, dark]))
    assert scores[1] > scores[0] and scores[1] > scores[2]


def test_offline_features_cosine_is_one_for_the_same_frame_and_lower_for_others():
    frames = np.stack([frame_image(3), frame_image(3), frame_image(200, sharp=True)])
    feats = offline_features(frames)
    assert feats.shape == (3, 32 * 32 * 3)
    assert feats[0] @ feats[1] == pytest.approx(1.0, abs=1e-5)
    assert feats[0] @ feats[2] < 0.9


@pytest.fixture(scope="module")
def tiny_laion(tmp_path_factory):
    """A tiny random CLIP vision tower and an MLP head in LAION's layers.N layout, saved like real ones."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    root = tmp_path_factory.mktemp("laion")
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    head = {"layers.0.weight": torch.randn(8, 16), "layers.0.bias": torch.randn(8),
            "layers.2.weight": torch.randn(1, 8), "layers.2.bias": torch.randn(1)}
    save_file(head, str(root / "head.safetensors"))
    return root, head


def test_laion_scorer_is_the_head_on_normalised_clip_embeddings(tiny_laion):
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    root, head = tiny_laion
    frames = np.stack([frame_image(i, sharp=i % 2 == 0) for i in range(3)])
    scorer = LaionAestheticScorer(str(root / "clip"), str(root / "head.safetensors"))
    scores = scorer.score(frames)
    model = CLIPVisionModelWithProjection.from_pretrained(root / "clip").eval()
    pixels = CLIPImageProcessor.from_pretrained(root / "clip")(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeds = torch.nn.functional.normalize(model(pixel_values=pixels).image_embeds, dim=-1)
        expected = (embeds @ head["layers.0.weight"].T + head["layers.0.bias"]) @ head["layers.2.weight"].T + head["layers.2.bias"]
    np.testing.assert_allclose(scores, expected[:, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_missing_laion_files_name_what_to_provide(tiny_laion, tmp_path):
    root, _ = tiny_laion
    with pytest.raises(MissingWeightsError, match="LAION aesthetic head not found"):
        FrameJudge(ScorerSpec("laion", str(tmp_path / "none.safetensors"), str(root / "clip")))
    with pytest.raises(MissingWeightsError, match="CLIP model directory not found"):
        FrameJudge(ScorerSpec("laion", str(root / "head.safetensors"), str(tmp_path / "no-clip")))


def test_curation_with_the_laion_scorer_records_clip_similarity(tiny_laion, fixtures_dir, epic_videos, tmp_path):
    root, _ = tiny_laion
    out = tmp_path / "ds"
    curate(CurationConfig(format="epic100", annotations=str(fixtures_dir / "EPIC_100_train_sample.csv"),
                          videos=str(epic_videos), out=str(out), scorer="laion",
                          laion_head=str(root / "head.safetensors"), clip_dir=str(root / "clip"),
                          filter_similarity=False))
    records = load_records(str(out))
    assert len(records) == 4
    for rec in records:
        assert rec.extra["scorer"] == "laion" and rec.extra["feature"] == "clip"
        candidates = rec.extra["aesthetic_candidates_input"]
        assert rec.scores["aesthetic_input"] == pytest.approx(max(candidates.values()))
        assert -1.0 <= rec.scores["similarity"] <= 1.0
