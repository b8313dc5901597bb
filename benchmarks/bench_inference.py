"""Inference: egoframe's LegoPipeline vs diffusers' StableDiffusionInstructPix2PixPipeline, side by side.

Both pipelines get the SAME module objects (UNet, VAE, text encoder, tokenizer), copies of the same
scheduler, the same steps, guidance scales, seed and PIL input frames; runs are interleaved in one process.

Rows:
- ``ip2p``       diffusers' pipeline (the reference);
- ``egoframe``   LegoPipeline with the "descriptions" conditioning: C = ψ(R), the same 77 tokens as IP2P,
                 so any time difference is pipeline overhead (target ratio <= 1.00);
- ``egoframe+vllm`` the full LEGO conditioning (C = [ψ(R); σ(H_i); π(μ(H_t))], 410 tokens at SD size) with
                 precomputed VLLM embeddings: slower by the extra conditioning's FLOPs, reported beside it.

    python benchmarks/bench_inference.py --quick                      # tiny model, a few seconds
    python benchmarks/bench_inference.py --size tiny --batches 1 8 --steps 20 --repeats 5
    python benchmarks/bench_inference.py --size sd15 --batches 1 --steps 2 --repeats 2   # CPU: minutes
    python benchmarks/bench_inference.py --size sd15 --batches 1 8 --steps 25 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import interleaved, machine_line, mib  # noqa: E402

DESCRIPTION = "the person takes the red cup from the counter with the right hand"
ACTION = "take cup"


def sd15_components(resolution: int, seed: int = 0) -> dict:
    """Random-weight parts with Stable Diffusion 1.5's sizes (UNet grown to 8 input channels)."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from egoframe.models.conditioning import LegoConditioning
    from egoframe.models.text import build_tiny_clip_tokenizer

    torch.manual_seed(seed)
    # UNet2DConditionModel's defaults are SD 1.5's layout (320/640/1280/1280, 2 layers per block).
    unet = UNet2DConditionModel(sample_size=resolution // 8, in_channels=8, out_channels=4,
                                cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, latent_channels=4, sample_size=resolution)
    # SD's CLIP ViT-L/14 text tower; the tokenizer is egoframe's offline CLIP-format one (its vocabulary size
    # only changes the embedding table, not the compute).
    tokenizer = build_tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    scheduler = EulerAncestralDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                                beta_schedule="scaled_linear")
    lego_conditioning = LegoConditioning(cross_attention_dim=768, d_llm=5120, num_image_tokens=256,
                                         num_text_tokens=77)  # LLaVA-1.5-13B sizes: C is 410 x 768
    desc_conditioning = LegoConditioning(cross_attention_dim=768, use_image_tokens=False, use_text_tokens=False)
    return dict(unet=unet, vae=vae, tokenizer=tokenizer, text_encoder=text_encoder, scheduler=scheduler,
                lego_conditioning=lego_conditioning, desc_conditioning=desc_conditioning)


def tiny_parts(resolution: int, seed: int = 0) -> dict:
    from egoframe.models.tiny import TinyConfig, tiny_components

    config = TinyConfig(resolution=resolution)
    parts = tiny_components(config, ablation="lego", seed=seed)
    lego = parts.pop("conditioning")
    desc = tiny_components(config, ablation="descriptions", seed=seed)["conditioning"]
    return dict(**parts, lego_conditioning=lego, desc_conditioning=desc)


def build(size: str, resolution: int, device: str, dtype: torch.dtype):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from egoframe.pipelines.lego import LegoPipeline

    parts = sd15_components(resolution) if size == "sd15" else tiny_parts(resolution)
    for name in ("unet", "vae", "text_encoder", "lego_conditioning", "desc_conditioning"):
        parts[name].to(device=device, **({} if dtype == torch.float32 else {"dtype": dtype})).eval()
    shared = dict(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                  unet=parts["unet"])

    def scheduler():  # each pipeline steps its own copy: schedulers keep state between steps
        return type(parts["scheduler"]).from_config(parts["scheduler"].config)

    ref = StableDiffusionInstructPix2PixPipeline(**shared, scheduler=scheduler(), safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
    ego = LegoPipeline(**shared, scheduler=scheduler(), conditioning=parts["desc_conditioning"])
    lego = LegoPipeline(**shared, scheduler=scheduler(), conditioning=parts["lego_conditioning"])
    for pipe in (ref, ego, lego):
        pipe.set_progress_bar_config(disable=True)
    return ref, ego, lego


def ablations(ego) -> dict:
    """egoframe's pipeline with each of its savings switched off in turn (same modules), to show what each buys."""
    from egoframe.pipelines.lego import LegoPipeline

    out = {}
    for name, attrs in (("ego -kvcache", dict(cache_cross_attention=False)),
                        ("ego -infmode", dict(use_inference_mode=False)),
                        ("ego -both", dict(cache_cross_attention=False, use_inference_mode=False))):
        pipe = LegoPipeline(**{k: getattr(ego, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "conditioning")},
                            scheduler=type(ego.scheduler).from_config(ego.scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        for k, v in attrs.items():
            setattr(pipe, k, v)
        out[name] = pipe
    return out


def frames(batch: int, resolution: int) -> list:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(batch):
        img = np.full((resolution, resolution, 3), 150, np.uint8)
        x, y = rng.integers(0, resolution // 2, 2)
        img[y:y + resolution // 4, x:x + resolution // 4] = (220, 40, 40)
        out.append(Image.fromarray(img))
    return out


def vllm_inputs(pipe, batch: int, device, dtype) -> dict:
    c = pipe.conditioning.config
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, c.num_text_tokens)
    mask[:, :24] = 1  # a 24-token answer, the rest padding
    return dict(vllm_image_tokens=torch.randn(batch, c.num_image_tokens, c.d_llm, generator=g).to(device, dtype),
                vllm_text_tokens=(torch.randn(batch, c.num_text_tokens, c.d_llm, generator=g) * mask[..., None])
                .to(device, dtype),
                vllm_text_mask=mask.to(device))


def callers(ref, ego, lego, images, steps, scales, device, output_type="pil", seed=0, extra=None):
    batch = len(images)
    vllm = vllm_inputs(lego, batch, device, lego.unet.dtype)
    s_x, s_c = scales

    def gen():
        return torch.Generator(device=device).manual_seed(seed)

    def ego_call(pipe):
        return lambda: pipe(images, ACTION, description=DESCRIPTION, num_inference_steps=steps,
                            image_guidance_scale=s_x, guidance_scale=s_c, generator=gen(),
                            output_type=output_type, progress=False)

    return {**{name: ego_call(pipe) for name, pipe in (extra or {}).items()}, 
        "ip2p": lambda: ref(prompt=[DESCRIPTION] * batch, image=images, num_inference_steps=steps,
                            image_guidance_scale=s_x, guidance_scale=s_c, generator=gen(), output_type=output_type),
        "egoframe": lambda: ego(images, ACTION, description=DESCRIPTION, num_inference_steps=steps,
                                image_guidance_scale=s_x, guidance_scale=s_c, generator=gen(),
                                output_type=output_type, progress=False),
        "egoframe+vllm": lambda: lego(images, ACTION, description=DESCRIPTION, num_inference_steps=steps,
                                      image_guidance_scale=s_x, guidance_scale=s_c, generator=gen(),
                                      output_type=output_type, progress=False, **vllm),
    }


def same_output_check(ref, ego, images, device) -> float:
    """Max |difference| in [0, 1] pixels between the two pipelines on the same seed (2 steps)."""
    run = callers(ref, ego, ego, images, 2, (1.5, 7.5), device, output_type="pt")
    with torch.no_grad():
        a = run["ip2p"]().images.float().cpu()  # diffusers post-processes to [0, 1]
        b = (run["egoframe"]().images.float().cpu().clamp(-1, 1) + 1) / 2
    return float((a - b).abs().max())


def count_flops(ego, lego, batch: int, device) -> dict:
    """FLOPs of one guided UNet step (3 branches batched) with each condition, and of building C."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = ego.unet
    h = unet.config.sample_size
    x = torch.randn(3 * batch, unet.config.in_channels, h, h, device=device, dtype=unet.dtype)
    t = torch.tensor(500, device=device)
    vllm = vllm_inputs(lego, batch, device, unet.dtype)
    states = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device, dtype=unet.dtype)
    out = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            cond, mask = lego.conditioning(states, **vllm)
            null, null_mask = lego.conditioning(states, **vllm, drop_vllm=torch.ones(batch, dtype=torch.bool,
                                                                                      device=device))
        out["conditioning"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            unet(x, t, encoder_hidden_states=torch.cat([states] * 3)).sample
        out["unet_step_77"] = fc.get_total_flops()
        big = torch.cat([cond, null, null])
        big_mask = None if mask is None else torch.cat([mask, null_mask, null_mask])
        with FlopCounterMode(display=False) as fc:
            unet(x, t, encoder_hidden_states=big, encoder_attention_mask=big_mask).sample
        out["unet_step_lego"] = fc.get_total_flops()
        out["lego_tokens"] = big.shape[1]
    return out


def channels_last_pair(ref, ego) -> tuple:
    """Copies of both pipelines whose UNet and VAE weights are NHWC (one copy each: same weights, own layout)."""
    import copy

    from diffusers import StableDiffusionInstructPix2PixPipeline

    from egoframe.pipelines.lego import LegoPipeline

    unet, vae = copy.deepcopy(ego.unet), copy.deepcopy(ego.vae)
    ref_cl = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=ego.text_encoder, tokenizer=ego.tokenizer, unet=unet,
        scheduler=type(ref.scheduler).from_config(ref.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    ref_cl.unet.to(memory_format=torch.channels_last)
    ref_cl.vae.to(memory_format=torch.channels_last)
    ego_cl = LegoPipeline(vae=copy.deepcopy(ego.vae), text_encoder=ego.text_encoder, tokenizer=ego.tokenizer,
                          unet=copy.deepcopy(ego.unet), conditioning=ego.conditioning,
                          scheduler=type(ego.scheduler).from_config(ego.scheduler.config)).enable_channels_last()
    for pipe in (ref_cl, ego_cl):
        pipe.set_progress_bar_config(disable=True)
    return ref_cl, ego_cl


def paired_ratio(seconds: list[float], reference: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Geometric mean of the per-round time ratios (each round runs both, interleaved) with a 95 % bootstrap
    interval over rounds: the pairing removes the machine's round-to-round drift from the comparison."""
    logs = np.log(np.asarray(seconds) / np.asarray(reference))
    if logs.size < 2:
        value = float(np.exp(logs.mean()))
        return value, value, value
    rng = np.random.default_rng(seed)
    means = logs[rng.integers(0, logs.size, (10000, logs.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.exp(logs.mean())), float(np.exp(low)), float(np.exp(high))


def call_flops(run) -> int:
    """FLOPs of one whole pipeline call (torch.utils.flop_counter: matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        run()
    return fc.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, batch 1, 2 steps, 2 repeats (CI)")
    parser.add_argument("--size", choices=("tiny", "sd15"), default="tiny")
    parser.add_argument("--resolution", type=int, default=None, help="pixels (default: tiny 64, sd15 256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds per batch size")
    parser.add_argument("--memory-runs", type=int, default=1,
                        help="untimed runs per pipeline that measure peak memory (after the timed rounds)")
    parser.add_argument("--image-scale", type=float, default=1.5, help="s_x (LEGO's code and IP2P: 1.5)")
    parser.add_argument("--text-scale", type=float, default=7.5, help="s_c (LEGO's code and IP2P: 7.5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 is steadier on a shared machine)")
    parser.add_argument("--ablate", action="store_true",
                        help="also time egoframe with its K/V reuse and inference mode switched off")
    parser.add_argument("--channels-last", action="store_true",
                        help="also time both pipelines on NHWC copies of the UNet and VAE")
    parser.add_argument("--call-flops", action="store_true",
                        help="count whole-call FLOPs also for --size sd15 (always done for tiny)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.batches, args.steps, args.repeats, args.ablate = "tiny", [1], 2, 2, True
    resolution = args.resolution or (256 if args.size == "sd15" else 64)
    dtype = getattr(torch, args.dtype)

    print(f"machine: {machine_line(args.device)}")
    print(f"model: {args.size} at {resolution} px, {args.steps} steps Euler ancestral, s_x {args.image_scale}, "
          f"s_c {args.text_scale}, {args.dtype} on {args.device}; {args.repeats} interleaved timed rounds, "
          f"then {args.memory_runs} memory run(s) each")
    ref, ego, lego = build(args.size, resolution, args.device, dtype)
    extra = ablations(ego) if args.ablate else {}
    ref_cl = None
    if args.channels_last:
        ref_cl, extra["ego channels_last"] = channels_last_pair(ref, ego)
    if args.size == "tiny":
        diff = same_output_check(ref, ego, frames(1, resolution), args.device)
        print(f"same components, same seed: max |egoframe - ip2p| = {diff:.2e} (pixels in [0, 1])")
    rows = []
    for batch in args.batches:
        images = frames(batch, resolution)
        runs = callers(ref, ego, lego, images, args.steps, (args.image_scale, args.text_scale), args.device,
                       extra=extra)
        if ref_cl is not None:
            runs["ip2p channels_last"] = callers(ref_cl, ego, lego, images, args.steps,
                                                 (args.image_scale, args.text_scale), args.device)["ip2p"]
        runs = {"ip2p": runs.pop("ip2p"), "egoframe": runs.pop("egoframe"),
                "egoframe+vllm": runs.pop("egoframe+vllm"), **runs}
        with torch.no_grad():
            result = interleaved(runs, args.repeats, args.device, memory_runs=args.memory_runs)
        flops = count_flops(ego, lego, batch, args.device)
        if args.call_flops or args.size == "tiny":
            # Whole calls at 1 and 2 steps give the per-step and fixed FLOPs; extrapolated to --steps.
            per_call = {}
            for name in [n for n in runs if "channels_last" not in n]:  # the layout changes no FLOP
                one, two = (call_flops(callers(ref, ego, lego, images, n, (args.image_scale, args.text_scale),
                                               args.device, extra=extra)[name]) for n in (1, 2))
                per_call[name] = one + (args.steps - 1) * (two - one)
            print(f"batch {batch}: GFLOP per image of a whole {args.steps}-step call: "
                  + ", ".join(f"{n} {f / batch / 1e9:.3f}" for n, f in per_call.items()))
        base = result["ip2p"]
        print(f"batch {batch}: seconds per call, round by round: "
              + "; ".join(f"{n} " + " ".join(f"{x:.2f}" for x in r["seconds"]) for n, r in result.items()))
        for name, r in result.items():
            ratio, low, high = paired_ratio(r["seconds"], base["seconds"])
            rows.append((batch, name, r["median_s"] / batch, r["peak_bytes"], ratio, low, high,
                         (r["peak_bytes"] / base["peak_bytes"]) if base["peak_bytes"] > 0 else float("nan")))
        cond_extra = (args.steps * (flops["unet_step_lego"] - flops["unet_step_77"]) + flops["conditioning"])
        total_ref = args.steps * flops["unet_step_77"]
        print(f"batch {batch}: extra conditioning FLOPs (C of {flops['lego_tokens']} tokens vs 77): "
              f"{cond_extra / batch / 1e9:.3f} GFLOP per image = +{100 * cond_extra / total_ref:.1f}% of the "
              f"denoising UNet FLOPs ({total_ref / batch / 1e9:.2f} GFLOP per image; building C: "
              f"{flops['conditioning'] / batch / 1e9:.4f} GFLOP)")
        print(f"  FLOP-predicted time ratio of egoframe+vllm without K/V reuse: {(total_ref + cond_extra) / total_ref:.3f}")
    print("time ratio: geometric mean of the per-round ratios to ip2p, with its 95 % bootstrap interval over rounds")
    print(f"{'batch':>5} {'pipeline':<18} {'s/image':>9} {'peak mem':>12} {'time ratio':>11} {'95% CI':>15} "
          f"{'mem ratio':>10}")
    for batch, name, per_image, peak, ratio, low, high, mem_ratio in rows:
        print(f"{batch:>5} {name:<18} {per_image:>9.4f} {mib(peak):>12} {ratio:>10.3f}x "
              f"{f'[{low:.3f}, {high:.3f}]':>15} {mem_ratio:>9.2f}x")

if __name__ == "__main__":
    main()
