"""Training throughput: `egoframe train` (the library loop) vs a diffusers train_instruct_pix2pix-style loop.

Same tiny model (egoframe's tiny architecture, "descriptions" variant: C = ψ(R), so both train the same
UNet), same synthetic data, batch, AdamW, EMA, grad clipping and CFG dropout, both on this machine's CPU.
The reference loop is written here the way diffusers' example trains: every step it VAE-encodes both frames
and runs the text encoder, then updates UNet + EMA (diffusers' EMAModel). egoframe's loop encodes the frozen
parts once (``data.precompute``, its default); ``egoframe (no precompute)`` is the equal-work comparison.
Samples/s are measured over the optimisation steps only (egoframe: between its per-step loss records,
excluding the first step; reference: the same); peak memory is the sampled RSS rise of the whole run.

Options, each its own row: ``--channels-last`` (NHWC UNet; `optim.channels_last` in egoframe and the same on
the reference loop), ``--classic-attention`` (diffusers' pre-SDPA attention on the reference, to show what SDPA
gives), ``--compile`` (torch.compile of the UNet, `optim.compile`; needs a C++ compiler for CPU inductor and a
long first step, excluded from the rate) and ``--workers N`` (egoframe without precompute, frames decoded
ahead in N threads: `data.num_workers`).

    python benchmarks/bench_training.py --quick
    python benchmarks/bench_training.py --steps 30 --repeats 3 --channels-last --classic-attention --workers 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import machine_line, memory_runs_of, mib  # noqa: E402

COLORS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 200, 60)}


def make_pairs(root: str, n: int, size: int) -> str:
    """A small curated data set (pairs.parquet + PNG shards): a cup moves into the named hand."""
    from PIL import Image

    from egoframe.data.records import ActionRecord, save_records

    os.makedirs(os.path.join(root, "shards"), exist_ok=True)
    records = []
    for i in range(n):
        color, hand = sorted(COLORS)[i % 3], ("left", "right")[(i // 3) % 2]
        before = np.full((size, size, 3), 150, np.uint8)
        after = before.copy()
        x = 2 + (3 * i) % (size // 2)
        before[4:4 + size // 5, x:x + size // 5] = COLORS[color]
        hx = 2 if hand == "left" else size // 2
        after[size - size // 4:size - 2, hx:hx + size // 5] = COLORS[color]
        for tag, img in (("in", before), ("tgt", after)):
            Image.fromarray(img).save(os.path.join(root, "shards", f"{i:04d}_{tag}.png"))
        records.append(ActionRecord(
            id=f"p{i:04d}", source="synthetic", action="take cup", verb="take", noun="cup", video_id=f"v{i % 4}",
            width=size, height=size, input_path=f"shards/{i:04d}_in.png", target_path=f"shards/{i:04d}_tgt.png",
            description=f"the person takes the {color} cup with the {hand} hand", split="train"))
    save_records(records, os.path.join(root, "pairs.parquet"))
    return root


def egoframe_config(data: str, out: str, resolution: int, batch: int, steps: int, precompute: bool,
                    workers: int = 0, **optim):
    from egoframe.training.config import parse_config

    return parse_config({
        "data": {"root": data, "resolution": resolution, "precompute": precompute, "num_workers": workers},
        "model": {"ablation": "descriptions"},
        "optim": {"batch_size": batch, "max_steps": steps, "lr": 1e-4, **optim},
        "log": {"out_dir": out, "checkpoint_every": 10**6, "num_samples": 0, "tensorboard": False},
    })


def run_egoframe(config) -> float:
    """Samples/s of `egoframe train`'s optimisation steps, timed at each step's loss record."""
    import egoframe.training.trainer as trainer
    from egoframe.engine import LossLog

    stamps = []
    real = LossLog.append

    def stamped(self, step, loss, **fields):  # the shared loop logs one loss line per optimizer step
        stamps.append(time.perf_counter())
        real(self, step, loss, **fields)

    LossLog.append = stamped
    try:
        shutil.rmtree(config.log.out_dir, ignore_errors=True)
        trainer.train(config, progress=False)
    finally:
        LossLog.append = real
    # From the end of step 1 to the end of the last step: excludes set-up, the first step, export.
    return config.optim.batch_size * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def reference_loop(data: str, resolution: int, batch: int, steps: int, channels_last=False, classic=False,
                   compile_unet=False, seed=0) -> float:
    """InstructPix2Pix training the way diffusers' example script does it (re-implemented, not copied)."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from egoframe.models.text import tokenize
    from egoframe.models.tiny import TinyConfig, tiny_components
    from egoframe.training.data import PairSource

    torch.manual_seed(seed)
    parts = tiny_components(TinyConfig(resolution=resolution), ablation="descriptions", seed=seed)
    vae, text_encoder, unet = parts["vae"], parts["text_encoder"], parts["unet"]
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    unet.train()
    if classic:
        from diffusers.models.attention_processor import AttnProcessor

        unet.set_attn_processor(AttnProcessor())
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    noise_scheduler = DDPMScheduler.from_config(parts["scheduler"].config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-2)
    ema = EMAModel(unet.parameters(), decay=0.9999)
    model = torch.compile(unet) if compile_unet else unet
    source = PairSource(data, "train", resolution)
    null_ids, _ = tokenize(parts["tokenizer"], [""])
    p = 0.05
    g = torch.Generator().manual_seed(seed)
    stamps = []
    for step in range(steps):
        idx = torch.randint(0, len(source), (batch,), generator=g).tolist()
        pairs = [source.images(i) for i in idx]
        original, edited = torch.stack([q[0] for q in pairs]), torch.stack([q[1] for q in pairs])
        ids, _ = tokenize(parts["tokenizer"], [source.texts(i)[1] for i in idx])
        with torch.no_grad():
            latents = vae.encode(edited).latent_dist.sample(generator=g) * vae.config.scaling_factor
            states = text_encoder(ids)[0]
            null_states = text_encoder(null_ids)[0]
            image_latents = vae.encode(original).latent_dist.mode()
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=g)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        u = torch.rand(batch, generator=g)
        states = torch.where((u < 2 * p)[:, None, None], null_states.expand_as(states), states)
        keep_image = 1 - ((u >= p) & (u < 3 * p)).float()
        model_in = torch.cat([noisy, image_latents * keep_image[:, None, None, None]], dim=1)
        if channels_last:
            model_in = model_in.contiguous(memory_format=torch.channels_last)
        pred = model(model_in, t, encoder_hidden_states=states).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        loss.item()  # wait for the step, as a logging loop would
        stamps.append(time.perf_counter())
    return batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="32 px, batch 4, 4 steps, 1 round (CI)")
    parser.add_argument("--resolution", type=int, default=64, help="the embedded default's 64 px")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed rounds")
    parser.add_argument("--memory-runs", type=int, default=1,
                        help="untimed runs per loop that measure peak memory (after the timed rounds)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--classic-attention", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=0,
                        help="also time egoframe without precompute, decoding frames in this many threads")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.resolution, args.batch, args.steps, args.items, args.repeats = 32, 4, 4, 16, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Import everything both loops use before measuring, so no variant's memory includes first imports.
    import accelerate  # noqa: F401
    import diffusers.training_utils  # noqa: F401

    import egoframe.training.trainer  # noqa: F401

    tmp = tempfile.mkdtemp(prefix="bench-training-")
    try:
        data = make_pairs(os.path.join(tmp, "data"), args.items, args.resolution)
        common = (data, args.resolution, args.batch, args.steps)
        variants = {
            "reference (diffusers-style)": lambda: reference_loop(*common),
            "egoframe train": lambda: run_egoframe(egoframe_config(data, os.path.join(tmp, "a"), args.resolution,
                                                                   args.batch, args.steps, True)),
            "egoframe (no precompute)": lambda: run_egoframe(egoframe_config(
                data, os.path.join(tmp, "b"), args.resolution, args.batch, args.steps, False)),
        }
        def ego(tag, precompute=True, workers=0, **optim):
            return lambda: run_egoframe(egoframe_config(data, os.path.join(tmp, tag), args.resolution, args.batch,
                                                        args.steps, precompute, workers, **optim))

        if args.workers:
            variants[f"egoframe, no precompute, {args.workers} workers"] = ego("w", False, args.workers)
        if args.channels_last:
            variants["reference + channels_last"] = lambda: reference_loop(*common, channels_last=True)
            variants["egoframe + channels_last"] = ego("cl", channels_last=True)
        if args.classic_attention:
            variants["reference, classic attention"] = lambda: reference_loop(*common, classic=True)
        if args.compile:
            variants["reference + torch.compile"] = lambda: reference_loop(*common, compile_unet=True)
            variants["egoframe + torch.compile"] = ego("co", compile=True)
        rates = {k: [] for k in variants}
        # Timed rounds run alone; peak memory comes from separate runs afterwards, because the RSS probe's
        # sampling thread shares the cores and perturbs the timing (benchmarks/_common.py: interleaved).
        for r in range(args.repeats):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                rates[name].append(variants[name]())
        peaks = memory_runs_of(variants, args.memory_runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {machine_line()}")
    print(f"training: tiny UNet at {args.resolution} px, batch {args.batch}, {args.steps} steps per run, "
          f"{args.items} pairs; medians of {args.repeats} interleaved timed rounds, "
          f"peak memory from {args.memory_runs} separate run(s)")
    base = float(np.median(rates["reference (diffusers-style)"]))
    print(f"{'loop':<38} {'samples/s':>10} {'ratio':>7} {'peak mem':>12}")
    for name in variants:
        rate = float(np.median(rates[name]))
        print(f"{name:<38} {rate:>10.2f} {rate / base:>6.2f}x {mib(float(np.median(peaks[name])) if peaks[name] else 0.0):>12}")


if __name__ == "__main__":
    main()
