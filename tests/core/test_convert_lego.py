"""`egoframe convert-lego`: a tiny checkpoint written in the public code's Lightning layout converts, loads
and generates, and its conditioning reproduces the public code's semantics (zeros after projection)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from PIL import Image

from egoframe.pipelines.convert_lego import LEGO_LDM_CONFIG

D = 32  # cross-attention width of the tiny model (768 in LEGO)
D_LLM = 24  # VLLM width (5120 in LEGO)


def tiny_ldm_config() -> dict:
    config = copy.deepcopy(LEGO_LDM_CONFIG)
    unet = config["model"]["params"]["unet_config"]["params"]
    unet.update(model_channels=32, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[1], num_heads=2,
                context_dim=D, image_size=8)
    vae = config["model"]["params"]["first_stage_config"]["params"]["ddconfig"]
    vae.update(ch=32, ch_mult=[1, 2], num_res_blocks=1, resolution=16)
    return config


_RES = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
        ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def _res(rest: str, table=_RES) -> str:
    head, _, tail = rest.partition(".")
    return dict(table).get(head, head) + "." + tail


def unet_to_ldm(state: dict, n_res: int, attention_up: set[int]) -> dict:
    """A diffusers UNet's weights under the LDM UNetModel's names (the layout the public code saves)."""
    out = {}
    for key, value in state.items():
        k = key
        rules = [
            (r"^time_embedding\.linear_1\.(.*)", lambda m: f"time_embed.0.{m[1]}"),
            (r"^time_embedding\.linear_2\.(.*)", lambda m: f"time_embed.2.{m[1]}"),
            (r"^conv_in\.(.*)", lambda m: f"input_blocks.0.0.{m[1]}"),
            (r"^conv_norm_out\.(.*)", lambda m: f"out.0.{m[1]}"),
            (r"^conv_out\.(.*)", lambda m: f"out.2.{m[1]}"),
            (r"^down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
             lambda m: f"input_blocks.{1 + int(m[1]) * (n_res + 1) + int(m[2])}.0.{_res(m[3])}"),
            (r"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)",
             lambda m: f"input_blocks.{1 + int(m[1]) * (n_res + 1) + int(m[2])}.1.{m[3]}"),
            (r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)",
             lambda m: f"input_blocks.{(int(m[1]) + 1) * (n_res + 1)}.0.op.{m[2]}"),
            (r"^mid_block\.resnets\.(\d)\.(.*)", lambda m: f"middle_block.{2 * int(m[1])}.{_res(m[2])}"),
            (r"^mid_block\.attentions\.0\.(.*)", lambda m: f"middle_block.1.{m[1]}"),
            (r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
             lambda m: f"output_blocks.{int(m[1]) * (n_res + 1) + int(m[2])}.0.{_res(m[3])}"),
            (r"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)",
             lambda m: f"output_blocks.{int(m[1]) * (n_res + 1) + int(m[2])}.1.{m[3]}"),
            (r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)",
             lambda m: f"output_blocks.{int(m[1]) * (n_res + 1) + n_res}."
                       f"{2 if int(m[1]) in attention_up else 1}.conv.{m[2]}"),
        ]
        for pattern, rename in rules:
            match = re.match(pattern, key)
            if match:
                k = rename(match)
                break
        else:
            raise AssertionError(f"no LDM name for {key}")
        out["model.diffusion_model." + k] = value
    return out


_VAE_RES = [("conv_shortcut", "nin_shortcut")]
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(state: dict, n_levels: int) -> dict:
    out = {}
    for key, value in state.items():
        k = key
        m = re.match(r"^(encoder|decoder)\.(.*)", key)
        if m:
            part, rest = m[1], m[2]
            rules = [
                (r"^down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", lambda x: f"down.{x[1]}.block.{x[2]}.{_res(x[3], _VAE_RES)}"),
                (r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", lambda x: f"down.{x[1]}.downsample.conv.{x[2]}"),
                (r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
                 lambda x: f"up.{n_levels - 1 - int(x[1])}.block.{x[2]}.{_res(x[3], _VAE_RES)}"),
                (r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)",
                 lambda x: f"up.{n_levels - 1 - int(x[1])}.upsample.conv.{x[2]}"),
                (r"^mid_block\.resnets\.(\d)\.(.*)", lambda x: f"mid.block_{int(x[1]) + 1}.{_res(x[2], _VAE_RES)}"),
                (r"^mid_block\.attentions\.0\.(to_out\.0|group_norm|to_q|to_k|to_v)\.(.*)",
                 lambda x: f"mid.attn_1.{_VAE_ATTN[x[1]]}.{x[2]}"),
                (r"^conv_norm_out\.(.*)", lambda x: f"norm_out.{x[1]}"),
                (r"^(conv_in|conv_out)\.(.*)", lambda x: f"{x[1]}.{x[2]}"),
            ]
            for pattern, rename in rules:
                match = re.match(pattern, rest)
                if match:
                    k = f"{part}.{rename(match)}"
                    break
            else:
                raise AssertionError(f"no LDM name for {key}")
            if ".mid.attn_1." in k and k.endswith("weight") and value.dim() == 2:
                value = value[:, :, None, None]  # the LDM's attention uses 1x1 convolutions
        out["first_stage_model." + k] = value
    return out


@pytest.fixture(scope="module")
def lego_ckpt(tmp_path_factory):
    """A tiny LEGO checkpoint in the public layout, plus the reference modules it was made from."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from egoframe.models.text import build_tiny_clip_tokenizer

    tmp_path = tmp_path_factory.mktemp("lego_ckpt")
    torch.manual_seed(0)
    config = tiny_ldm_config()
    unet_config = create_unet_diffusers_config_from_ldm(config, {})
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**create_vae_diffusers_config_from_ldm(config, {}))
    tokenizer = build_tiny_clip_tokenizer()
    text_config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=D, intermediate_size=2 * D,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=tokenizer.model_max_length,
                                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)
    text = CLIPTextModel(text_config)
    clip_dir = tmp_path / "clip"
    tokenizer.save_pretrained(clip_dir)
    text.save_pretrained(clip_dir)
    # The public code's modules, as it builds them (torch defaults: feed-forward 2048, ReLU, dropout 0.1).
    projection_img, projection_txt = torch.nn.Linear(D_LLM, D), torch.nn.Linear(D_LLM, D)
    mixer = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(d_model=D, nhead=8 if D % 8 == 0 else 2, batch_first=True, norm_first=True),
        num_layers=2, enable_nested_tensor=False).eval()
    up_attention = {i for i, t in enumerate(unet_config["up_block_types"]) if t.startswith("CrossAttn")}
    unet_ldm = unet_to_ldm(unet.state_dict(), 1, up_attention)
    state = {**unet_ldm, **vae_to_ldm(vae.state_dict(), 2),
             **{f"cond_stage_model.transformer.{k}": v for k, v in text.state_dict().items()},
             **{f"projection_img.{k}": v for k, v in projection_img.state_dict().items()},
             **{f"projection_txt.{k}": v for k, v in projection_txt.state_dict().items()},
             **{f"self_attn_mix.{k}": v for k, v in mixer.state_dict().items()}}
    # LitEma: the UNet's weights again, under dot-less names, here deliberately different (x 0.5).
    state.update({"model_ema." + k[len("model."):].replace(".", ""): v * 0.5 for k, v in unet_ldm.items()})
    state.update({"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(10)})
    ckpt = tmp_path / "lego.ckpt"
    torch.save({"epoch": 1, "global_step": 10, "state_dict": state, "lr_schedulers": []}, ckpt)
    return dict(ckpt=ckpt, clip=clip_dir, config=config, unet=unet, projection_img=projection_img,
                projection_txt=projection_txt, mixer=mixer, unet_ldm=unet_ldm)


def test_converted_checkpoint_loads_generates_and_keeps_the_public_semantics(lego_ckpt, tmp_path):
    from PIL import Image

    from egoframe.pipelines.convert_lego import convert_lego_checkpoint
    from egoframe.pipelines.loading import load_pipeline

    out = tmp_path / "model"
    summary = convert_lego_checkpoint(lego_ckpt["ckpt"], out, lego_ckpt["clip"], original_config=lego_ckpt["config"],
                                      num_image_tokens=3, num_text_tokens=5)
    assert summary["ema"] is True
    pipe = load_pipeline(str(out))
    # EMA weights replaced the raw ones (x 0.5 in the fixture): one UNet weight, by its LDM name.
    raw = lego_ckpt["unet_ldm"]["model.diffusion_model.input_blocks.0.0.weight"]
    assert torch.allclose(pipe.unet.conv_in.weight, raw * 0.5)
    assert pipe.unet.config.in_channels == 8 and pipe.sampling_defaults["guidance_scale"] == 7.5
    # The LDM config's latent size, not diffusers' SD-1.x guess of 512 px: 8 latents x 2 (the tiny VAE) = 16 px
    # (LEGO: 32 x 8 = 256 px).
    assert pipe.resolution == 16
    assert pipe.sampling_defaults["image_guidance_scale"] == 1.5
    # The conditioning equals the public code's: C = [ψ; σ(H_i); π(μ(H_t))], zeros after projection when dropped.
    psi = torch.randn(2, 77, D)
    h_i, h_t = torch.randn(2, 3, D_LLM), torch.randn(2, 5, D_LLM)
    with torch.no_grad():
        got, mask = pipe.conditioning(psi, h_i, h_t, drop_vllm=torch.tensor([False, True]))
        drop = torch.tensor([0.0, 1.0]).view(2, 1, 1)
        want = torch.cat([psi, (1 - drop) * lego_ckpt["projection_img"](h_i),
                          (1 - drop) * lego_ckpt["mixer"](lego_ckpt["projection_txt"](h_t))], dim=1)
    assert mask is None
    assert torch.allclose(got, want, atol=1e-5)
    image = Image.new("RGB", (16, 16), (120, 80, 40))
    frame = pipe(image, "take cup", description="the person takes the cup", vllm_image_tokens=h_i[:1],
                 vllm_text_tokens=h_t[:1], vllm_text_mask=torch.ones(1, 5), num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert frame.size == (16, 16)


def test_convert_cli_and_bad_inputs(lego_ckpt, tmp_path, capsys):
    import yaml

    from egoframe.cli.main import main

    config_path = tmp_path / "train_tiny.yaml"
    config_path.write_text(yaml.safe_dump(lego_ckpt["config"]))
    with pytest.raises(SystemExit) as exit_info:
        main(["convert-lego", str(lego_ckpt["ckpt"]), "--out", str(tmp_path / "m"), "--clip", str(lego_ckpt["clip"]),
              "--config", str(config_path), "--num-image-tokens", "3", "--num-text-tokens", "5", "--no-ema"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert "EMA: no" in capsys.readouterr().out
    # The published size does not fit the tiny weights: one line, exit 2.
    with pytest.raises(SystemExit) as exit_info:
        main(["convert-lego", str(lego_ckpt["ckpt"]), "--out", str(tmp_path / "m2"), "--clip", str(lego_ckpt["clip"])])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "does not fit the LDM config" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert-lego", str(tmp_path / "junk.ckpt"), "--out", str(tmp_path / "m3"), "--clip", str(lego_ckpt["clip"])])
    assert exit_info.value.code == 2 and "not a readable torch checkpoint" in capsys.readouterr().err


def test_published_lego_recipe_end_to_end(lego_ckpt, tmp_path, capsys):
    """docs/lego.md's commands on a LEGO-Dataset-shaped folder, released-style features and a converted
    checkpoint: curate --format lego, vllm import-features, convert-lego, generate --data --embeddings, eval."""
    import csv
    import os

    import numpy as np
    import yaml

    from egoframe.cli.main import main
    from egoframe.data.records import load_records
    from egoframe.vllm.cache import released_feature_path
    from tests.data.test_lego_format import make_lego_dataset

    def run(*args) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        assert exit_info.value.code == 0, captured.err
        return captured.out

    annotations, frames = make_lego_dataset(str(tmp_path))
    data = tmp_path / "data"
    run("data", "curate", "--format", "lego", "--annotations", annotations, "--videos", frames, "--out", data,
        "--no-progress")
    records = load_records(str(data))
    assert len(records) == 2
    for k, rec in enumerate(records):  # H_i (3 tokens) and H_t (4 of 5 tokens) per frame, as the release has
        for folder, shape in (("img", (3, D_LLM)), ("txt", (4, D_LLM))):
            path = released_feature_path(str(tmp_path / folder), rec.extra["image_0"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            np.save(path, np.random.default_rng(k).standard_normal(shape).astype(np.float16))
    run("vllm", "import-features", data, "--image-features", tmp_path / "img", "--text-features", tmp_path / "txt",
        "--n-text-tokens", "5", "--quiet")
    config_path = tmp_path / "train_tiny.yaml"
    config_path.write_text(yaml.safe_dump(lego_ckpt["config"]))
    model = tmp_path / "model"
    run("convert-lego", lego_ckpt["ckpt"], "--out", model, "--clip", lego_ckpt["clip"], "--config", config_path,
        "--num-image-tokens", "3", "--num-text-tokens", "5")
    out = tmp_path / "set"
    said = run("generate", "--data", data, "--split", "test", "--embeddings", data / "vllm_embeddings",
               "--model", model, "--out", out, "--steps", "2")
    assert "generation set" in said
    with open(out / "samples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["sample_id"] for r in rows) == sorted(r.id for r in records)
    assert all(r["description"] for r in rows)  # llava_forecast_finetune, carried through
    assert all((out / r["lego"]).is_file() and (out / r["input"]).resolve().is_file() for r in rows)
    # The cached embeddings condition the frames: other features give other frames for the same seed.
    first = np.asarray(Image.open(out / rows[0]["lego"]))
    run("generate", "--data", data, "--embeddings", data / "vllm_embeddings", "--model", model, "--out",
        tmp_path / "same", "--steps", "2")
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "same" / rows[0]["lego"])))
    # Another method's column already in samples.csv survives a rerun (here every output exists: no model loads).
    with open(out / "samples.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*table[0], "other"])
        writer.writeheader()
        writer.writerows({**row, "other": row["lego"]} for row in table)
    run("generate", "--data", data, "--embeddings", data / "vllm_embeddings", "--model", model, "--out", out)
    with open(out / "samples.csv", newline="") as handle:
        assert {"lego", "other"} <= set(csv.DictReader(handle).fieldnames)
    assert "psnr" in run("eval", out, "--out", tmp_path / "eval", "--resamples", "50")
    # A cache that lacks a pair, and --embeddings without --data, are one-line errors before anything loads.
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--data", str(data), "--embeddings", str(tmp_path / "nowhere"), "--model", str(model),
              "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--image", frames, "--action", "take cup", "--embeddings", str(data / "vllm_embeddings")])
    assert exit_info.value.code == 2 and "needs --data" in capsys.readouterr().err


def test_converted_pipeline_samples_as_the_public_code_does(lego_ckpt, tmp_path):
    """A reference sampler written from the public code's semantics, on the converted UNet / VAE / CLIP but with
    the checkpoint's own σ, μ, π modules (not the converted conditioning): ψ = CLIP's last hidden states of the
    description; C = [ψ; σ(H_i); π(μ(H_t))]; the null condition = the empty prompt's ψ with zeros after
    projection; c_concat = the input latent's mode, unscaled, zeros for the unconditional branch; CFGDenoiser's
    ε = ε(∅,∅) + s_c·(ε(x,c) − ε(x,∅)) + s_x·(ε(x,∅) − ε(∅,∅)) (metrics/inference.py); Euler ancestral. The
    converted pipeline must give the same frame to 1e-5."""
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    from egoframe.pipelines.convert_lego import convert_lego_checkpoint
    from egoframe.pipelines.loading import load_pipeline

    out = tmp_path / "model"
    convert_lego_checkpoint(lego_ckpt["ckpt"], out, lego_ckpt["clip"], original_config=lego_ckpt["config"],
                            num_image_tokens=3, num_text_tokens=5)
    pipe = load_pipeline(str(out))
    # Every UNet weight came back to its place through diffusers' LDM mapping (the EMA copy: x 0.5 here).
    reference = {k: v * 0.5 for k, v in lego_ckpt["unet"].state_dict().items()}
    assert set(pipe.unet.state_dict()) == set(reference)
    assert all(torch.equal(v, reference[k]) for k, v in pipe.unet.state_dict().items())
    torch.manual_seed(1)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    h_i, h_t = torch.randn(1, 3, D_LLM), torch.randn(1, 5, D_LLM)
    description, s_text, s_image, steps = "the person takes the cup", 7.5, 1.5, 3
    got = pipe(image, "take cup", description=description, vllm_image_tokens=h_i, vllm_text_tokens=h_t,
               vllm_text_mask=torch.ones(1, 5), num_inference_steps=steps, guidance_scale=s_text,
               image_guidance_scale=s_image, generator=torch.Generator().manual_seed(0), output_type="pt",
               progress=False).images

    tokenizer, text_encoder, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae
    with torch.no_grad():
        def psi(text):
            ids = tokenizer([text], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
            return text_encoder(ids).last_hidden_state

        vllm_tokens = [lego_ckpt["projection_img"](h_i), lego_ckpt["mixer"](lego_ckpt["projection_txt"](h_t))]
        cond = torch.cat([psi(description), *vllm_tokens], dim=1)
        uncond = torch.cat([psi(""), *(torch.zeros_like(v) for v in vllm_tokens)], dim=1)
        concat = vae.encode(image).latent_dist.mode()
        scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(steps)
        generator = torch.Generator().manual_seed(0)
        z = randn_tensor((1, 4, *concat.shape[-2:]), generator=generator) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            zin = scheduler.scale_model_input(torch.cat([z] * 3), t)
            model_in = torch.cat([zin, torch.cat([concat, concat, torch.zeros_like(concat)])], dim=1)
            out_cond, out_img_cond, out_uncond = unet(model_in, t, encoder_hidden_states=torch.cat(
                [cond, uncond, uncond])).sample.chunk(3)
            eps = out_uncond + s_text * (out_cond - out_img_cond) + s_image * (out_img_cond - out_uncond)
            z = scheduler.step(eps, t, z, generator=generator).prev_sample
        want = vae.decode(z / vae.config.scaling_factor).sample
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
