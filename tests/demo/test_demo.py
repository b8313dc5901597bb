"""The demo's callback on a tiny model (no browser): description, generated frame, baselines, bad inputs."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from egoframe.demo.app import INSTALL_HINT, DemoModels, example_frames, load_models, parse_baselines, run_demo
from egoframe.errors import InputError


@pytest.fixture(scope="module")
def models(tiny_desc_dir):
    return load_models(str(tiny_desc_dir), {"ip2p": str(tiny_desc_dir)})


@pytest.fixture(scope="module")
def frame():
    return example_frames(n=1)[0][0]


def test_example_frames_come_from_the_world():
    examples = example_frames(n=2, seed=0, resolution=64)
    assert len(examples) == 2
    for image, label in examples:
        assert image.size == (64, 64) and image.mode == "RGB" and len(label.split()) >= 2
        assert np.asarray(image).std() > 5  # a rendered scene, not a blank canvas


def test_generates_frame_and_baselines(models, frame):
    result = run_demo(models, frame, "take cup", steps=1, seed=3)
    size = frame.size  # made at the model's resolution, returned at the input's size
    assert result.frame.size == size
    assert [caption for _, caption in result.baselines] == ["ip2p"]
    assert result.baselines[0][0].size == size
    assert "no VLLM attached" in result.description
    # Same seed and same weights (the baseline here is the same directory): the same frame.
    assert np.array_equal(np.asarray(result.frame), np.asarray(result.baselines[0][0]))
    again = run_demo(models, frame, "take cup", steps=1, seed=3, show_baselines=False)
    assert again.baselines == [] and np.array_equal(np.asarray(again.frame), np.asarray(result.frame))
    other = run_demo(models, frame, "take cup", steps=1, seed=4, show_baselines=False)
    assert not np.array_equal(np.asarray(other.frame), np.asarray(result.frame))
    assert any("resized" in n for n in result.notes)  # 128 px example -> the tiny model's 32 px


def test_sliders_reach_the_pipeline(models, frame, monkeypatch):
    seen = {}
    original = type(models.main).__call__

    def spy(self, image, action, **kwargs):
        seen.update(kwargs, action=action)
        return original(self, image, action, **kwargs)

    monkeypatch.setattr(type(models.main), "__call__", spy)
    run_demo(models, frame, "  put cup ", description="the hand puts the cup down", steps=3,
             image_guidance_scale=2.5, guidance_scale=4.0, seed=1, show_baselines=False)
    assert seen["action"] == "put cup" and seen["description"] == "the hand puts the cup down"
    assert (seen["num_inference_steps"], seen["image_guidance_scale"], seen["guidance_scale"]) == (3, 2.5, 4.0)


def test_vllm_description_is_shown(tiny_desc_dir, frame):
    from egoframe.pipelines.loading import load_pipeline
    from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer, tokenizer_corpus

    pipe = load_pipeline(str(tiny_desc_dir))
    tokenizer = build_word_tokenizer(tokenizer_corpus(["the right hand lifts the cup"], ["take cup"]))
    config = TinyVllmConfig(image_size=32, patch_size=8, vision_hidden_size=32, vision_layers=2, text_hidden_size=32,
                            text_layers=1)
    pipe.attach_vllm(build_tiny_vllm(tokenizer, config, seed=0))
    result = run_demo(DemoModels(main=pipe), frame, "take cup", steps=1)
    assert "no VLLM attached" not in result.description
    assert not any(n.startswith("VLLM description") for n in result.notes)  # shown in its own box instead


@pytest.mark.parametrize("kwargs,message", [
    (dict(image=None), "no input frame"),
    (dict(image="frame.png"), "must be an image"),
    (dict(action="   "), "action is empty"),
    (dict(steps=0), "steps must be in"),
    (dict(steps=101), "steps must be in"),
    (dict(action="x" * 5000), "characters"),
])
def test_bad_inputs_are_one_line_errors(models, frame, kwargs, message):
    args = dict(image=frame, action="take cup", steps=1, show_baselines=False) | kwargs
    with pytest.raises(InputError, match=message):
        run_demo(models, **args)


def test_parse_baselines():
    assert parse_baselines(["ip2p=models/ip2p", " sd = a=b "]) == {"ip2p": "models/ip2p", "sd": "a=b"}
    for bad in (["ip2p"], ["=dir"], ["x="], ["a=1", "a=2"]):
        with pytest.raises(InputError):
            parse_baselines(bad)


def test_missing_gradio_names_the_extra(models, monkeypatch):
    from egoframe.demo.app import build_app

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError, as when not installed
    with pytest.raises(InputError, match=r"pip install 'egoframe\[demo\]'"):
        build_app(models, examples=[])
    from typer.testing import CliRunner

    from egoframe.cli.main import app

    result = CliRunner().invoke(app, ["demo", "--port", "7861"])
    assert result.exit_code != 0 and INSTALL_HINT in str(result.exception)


def test_gradio_app_builds_and_its_callback_runs(models, frame, tmp_path):
    gr = pytest.importorskip("gradio", reason="gradio is the optional 'demo' extra")
    from egoframe.demo.app import build_app

    app = build_app(models, examples=example_frames(n=1), example_dir=str(tmp_path))
    assert isinstance(app, gr.Blocks)
    assert (tmp_path / "example-0.png").exists()
    # The click handler registered on the Generate button is the callback wired to run_demo.
    handler = next(fn for fn in app.fns.values() if getattr(fn, "name", "") == "on_generate").fn
    description, image, gallery, notes = handler(frame, "take cup", "", 1, 7.5, 1.5, 0, True)
    assert image.size == frame.size and [c for _, c in gallery] == ["ip2p"]
    with pytest.raises(gr.Error, match="action is empty"):
        handler(frame, "", "", 1, 7.5, 1.5, 0, False)
