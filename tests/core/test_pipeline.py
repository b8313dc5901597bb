import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from PIL import Image

from egoframe.errors import InputError
from egoframe.pipelines.loading import load_pipeline
from tests.conftest import vllm_inputs


def _frame(color=(200, 30, 30), size=(40, 36)):
    img = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    img[...] = color
    img[5:20, 8:25] = (20, 180, 40)
    return Image.fromarray(img)


def _run(pipe, images, seed=0, steps=3, **kw):
    batch = len(images) if isinstance(images, list) else 1
    if pipe.conditioning.needs_vllm and "vllm_image_tokens" not in kw:
        kw.update(vllm_inputs(pipe, batch=batch))
    gens = [torch.Generator().manual_seed(seed + i) for i in range(batch)]
    return pipe(images, kw.pop("action", "take cup"), description=kw.pop("description", "the person takes the red cup"),
                num_inference_steps=steps, generator=gens, output_type="np", progress=False, **kw)


@pytest.fixture(scope="module")
def lego(tiny_lego_dir):
    return load_pipeline(tiny_lego_dir)


def test_save_load_same_output_for_same_seed(lego, tmp_path):
    first = _run(lego, _frame()).images
    lego.save_pretrained(tmp_path)
    again = load_pipeline(tmp_path)
    second = _run(again, _frame()).images
    assert np.array_equal(first, second)
    assert (tmp_path / "conditioning" / "diffusion_pytorch_model.safetensors").exists()
    assert not list(tmp_path.rglob("*.bin"))  # safetensors only, never pickle


def test_three_branches_batched_equal_three_calls(lego):
    batched = _run(lego, _frame(), batch_branches=True).images
    separate = _run(lego, _frame(), batch_branches=False).images
    assert np.abs(batched.astype(int) - separate.astype(int)).max() <= 1  # float reassociation only


def test_guidance_formula_on_one_step(lego):
    # ε = ε(∅,∅) + s_x(ε(x,∅) − ε(∅,∅)) + s_c(ε(x,c) − ε(x,∅)), checked against direct UNet calls.
    torch.manual_seed(0)
    lat = torch.randn(1, 4, 16, 16)
    img_lat = torch.randn(1, 4, 16, 16)
    v = vllm_inputs(lego)
    cond, cm = lego.encode_condition(["a red cup"], v["vllm_image_tokens"], v["vllm_text_tokens"], v["vllm_text_mask"], drop=False)
    null, nm = lego.encode_condition(["a red cup"], v["vllm_image_tokens"], v["vllm_text_tokens"], v["vllm_text_mask"], drop=True)
    lego.scheduler.set_timesteps(10)
    t = lego.scheduler.timesteps[0]
    with torch.no_grad():
        got = lego.predict_noise(lat, t, img_lat, cond, cm, null, nm, image_guidance_scale=7.5, guidance_scale=1.5)
        s = lego.scheduler.scale_model_input(lat, t)
        e_xc = lego.unet(torch.cat([s, img_lat], 1), t, cond, encoder_attention_mask=cm).sample
        e_x = lego.unet(torch.cat([s, img_lat], 1), t, null, encoder_attention_mask=nm).sample
        e_0 = lego.unet(torch.cat([s, torch.zeros_like(img_lat)], 1), t, null, encoder_attention_mask=nm).sample
    want = e_0 + 7.5 * (e_x - e_0) + 1.5 * (e_xc - e_x)
    assert torch.allclose(got, want, atol=1e-4)


def test_seeds_reproduce_and_differ(lego):
    a = _run(lego, _frame(), seed=1).images
    b = _run(lego, _frame(), seed=1).images
    c = _run(lego, _frame(), seed=2).images
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batch_equals_single_calls_with_same_generators(lego):
    frames = [_frame(), _frame((30, 30, 200))]
    v = vllm_inputs(lego, batch=2)
    both = _run(lego, frames, seed=5, **v).images
    one = _run(lego, frames[1], seed=6, **{k: t[1:] for k, t in v.items()}).images
    assert both.shape[0] == 2
    assert np.abs(both[1].astype(int) - one[0].astype(int)).max() <= 1


def test_any_diffusers_scheduler_and_many_images_per_prompt(lego):
    lego_dpm = type(lego)(**{**lego.components, "scheduler": DPMSolverMultistepScheduler.from_config(lego.scheduler.config)})
    out = _run(lego_dpm, _frame(), num_images_per_prompt=3)
    assert out.images.shape == (3, 32, 32, 3)
    assert len({im.tobytes() for im in out.images}) == 3  # different noise per image


def test_notes_state_resizing_and_conversion(lego):
    gray = _frame().convert("L")
    out = _run(lego, gray)
    assert any("L converted to RGB" in n for n in out.notes)
    assert any("resized from 40x36 to 32x32" in n for n in out.notes)


def test_missing_vllm_embeddings_is_a_clear_error(lego):
    with pytest.raises(InputError, match="vllm_image_tokens, vllm_text_tokens"):
        lego(_frame(), "take cup", description="x", num_inference_steps=1, progress=False)


def test_empty_and_huge_action_text(lego):
    v = vllm_inputs(lego)
    with pytest.raises(InputError, match="empty"):
        lego(_frame(), "  ", num_inference_steps=1, progress=False, **v)
    with pytest.raises(InputError, match="at most"):
        lego(_frame(), "cut " * 1000, num_inference_steps=1, progress=False, **v)


def test_long_description_keeps_end_of_text_token(lego, caplog):
    from egoframe.models.text import tokenize

    long = "the person takes the red cup with the right hand " * 20
    ids, cut = tokenize(lego.tokenizer, [long, "take cup"])
    eos = lego.tokenizer.eos_token_id
    assert ids.shape == (2, 77)
    assert cut[0] > 0 and cut[1] == 0
    assert ids[0, -1].item() == eos and ids[0, 0].item() == lego.tokenizer.bos_token_id
    with pytest.raises(InputError, match="tokens"):
        tokenize(lego.tokenizer, [long], long_text="error")
    with caplog.at_level("WARNING"):
        out = _run(lego, _frame(), description=long)
    assert out.images.shape == (1, 32, 32, 3)
    assert "end-of-text token kept" in caplog.text


def test_paper_sampling_follows_the_public_code():
    # BolinLai/LEGO configs/generate_*.yaml: scales_txt [7.5], scales_img [1.5]; the supplement's sentence swaps them.
    from egoframe.pipelines.lego import PAPER_SAMPLING, choose_sampling

    assert (PAPER_SAMPLING["guidance_scale"], PAPER_SAMPLING["image_guidance_scale"]) == (7.5, 1.5)
    assert PAPER_SAMPLING["num_inference_steps"] == 100
    chosen = choose_sampling(None, {"guidance_scale": None, "image_guidance_scale": None})
    assert (chosen["guidance_scale"], chosen["image_guidance_scale"]) == (7.5, 1.5)
