"""Fewer sampling steps at equal quality: DPM-Solver++ / UniPC at 20-25 steps vs Euler ancestral at 100.

Every configuration generates the same held-out pairs with the same seeds; the table gives, per configuration,
seconds per image, its speed-up over the reference (Euler ancestral, 100 steps, guidance on every step), the
UNet rows it evaluates (guided step = 3 rows, unguided = 1: a machine-independent cost), PSNR against the true
target frame and, with an oracle, *action success* (egoframe.evaluation.oracle) with a paired bootstrap interval
of its difference to the reference. ``--interval lo,hi`` runs the fast samplers with guidance only in that
fraction of the steps (LegoPipeline's ``guidance_interval``).

It then picks the fastest configuration that is >= 4x faster than the reference (by measured time) and whose
action success is within 1 point of the reference's (PSNR within 0.5 dB when there is no oracle).

    python benchmarks/bench_steps.py --quick                          # tiny random model, PSNR only
    python benchmarks/bench_steps.py --model RUN/model --data DATA --world WORLD --oracle ORACLE --n 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import machine_line  # noqa: E402

SAMPLERS = ("euler_a", "dpmpp", "unipc")


def make_scheduler(name: str, config):
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, UniPCMultistepScheduler

    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(config)
    raise SystemExit(f"unknown sampler {name!r}; choose from {SAMPLERS}")


def unet_rows(steps: int, interval: tuple[float, float]) -> int:
    guided = sum(interval[0] <= i / steps < interval[1] for i in range(steps))
    return 3 * guided + (steps - guided)


class Pairs:
    """Held-out inputs, targets, texts, VLLM embeddings and (for the oracle) true states."""

    def __init__(self, inputs, targets, actions, descriptions, records=None):
        self.inputs, self.targets = inputs, targets  # (N, 3, R, R) in [-1, 1]
        self.actions, self.descriptions, self.records = actions, descriptions, records
        self.vllm = None  # dict of tensors, when the model conditions on VLLM embeddings

    def __len__(self):
        return self.inputs.shape[0]


def curated_pairs(data: str, split: str, resolution: int, n: int) -> Pairs:
    from egoframe.data.dataset import FramePairDataset

    ds = FramePairDataset(data, resolution=resolution, split=split, flip=False)
    if len(ds) == 0:
        raise SystemExit(f"no {split!r} pairs in {data}")
    step = max(1, len(ds) // n)  # spread over the split, not the first n of one video
    idx = list(range(0, len(ds), step))[:n]
    items = [ds[i] for i in idx]
    return Pairs(torch.stack([it["input"] for it in items]), torch.stack([it["target"] for it in items]),
                 [it["action"] for it in items], [it["description"] or it["action"] for it in items],
                 [ds.records[i] for i in idx])


def synthetic_pairs(n: int, resolution: int) -> Pairs:
    """A cup moves down into a hand: enough for PSNR to move with the sampler, no oracle."""
    rng = np.random.default_rng(0)
    ins, tgs = [], []
    for _ in range(n):
        a = np.full((resolution, resolution, 3), 0.2, np.float32)
        b = a.copy()
        x = int(rng.integers(0, resolution // 2))
        a[2:resolution // 4, x:x + resolution // 4] = (0.9, -0.7, -0.7)
        b[-resolution // 4:-2, x:x + resolution // 4] = (0.9, -0.7, -0.7)
        ins.append(torch.from_numpy(a).permute(2, 0, 1))
        tgs.append(torch.from_numpy(b).permute(2, 0, 1))
    return Pairs(torch.stack(ins), torch.stack(tgs), ["take cup"] * n, ["the right hand takes the red cup"] * n)


def attach_vllm_inputs(pipe, pairs: Pairs, vllm_cache: str | None) -> None:
    """Compute the VLLM embeddings once, before any timing (every configuration reuses them)."""
    if not pipe.conditioning.needs_vllm:
        return
    if vllm_cache and pairs.records is not None:
        from egoframe.vllm.cache import VllmEmbeddingCache

        emb = VllmEmbeddingCache(vllm_cache).get_many([r.id for r in pairs.records])
    elif pipe.vllm is not None:
        emb = pipe.run_vllm(pairs.inputs, pairs.actions)
    else:  # a random model in --quick mode: random embeddings of the right shapes
        c = pipe.conditioning.config
        g = torch.Generator().manual_seed(0)
        from egoframe.vllm.embeddings import VllmEmbeddings

        emb = VllmEmbeddings(torch.randn(len(pairs), c.num_image_tokens, c.d_llm, generator=g),
                             torch.randn(len(pairs), c.num_text_tokens, c.d_llm, generator=g),
                             torch.ones(len(pairs), c.num_text_tokens, dtype=torch.long), [""] * len(pairs))
    pairs.vllm = dict(vllm_image_tokens=emb.image_tokens, vllm_text_tokens=emb.text_tokens,
                      vllm_text_mask=emb.text_mask)


def generate(pipe, pairs: Pairs, sampler: str, steps: int, interval, scales, batch: int, seed: int):
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(sampler, original.config)
    out = []
    start = time.perf_counter()
    try:
        for lo in range(0, len(pairs), batch):
            sl = slice(lo, lo + batch)
            extra = {k: v[sl] for k, v in pairs.vllm.items()} if pairs.vllm else {}
            gens = [torch.Generator().manual_seed(seed + i) for i in range(lo, min(lo + batch, len(pairs)))]
            res = pipe(pairs.inputs[sl], pairs.actions[sl], description=pairs.descriptions[sl],
                       num_inference_steps=steps, image_guidance_scale=scales[0], guidance_scale=scales[1],
                       generator=gens, output_type="np", progress=False, guidance_interval=interval, **extra)
            out.append(res.images)
    finally:
        pipe.scheduler = original
    seconds = time.perf_counter() - start
    return np.concatenate(out), seconds / len(pairs)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class Oracle:
    def __init__(self, oracle: str, world: str):
        from egoframe.evaluation.oracle import OracleReader, WorldStates

        self.reader = OracleReader.load(oracle)
        self.world = WorldStates(world)

    def success(self, records, images: np.ndarray) -> list[float]:
        from egoframe.evaluation.oracle import action_success, state_facts

        read = self.reader.read(list(images))
        out = []
        for rec, facts in zip(records, read):
            fin = state_facts(self.world.state(rec.video_id, rec.input_frame))
            ftg = state_facts(self.world.state(rec.video_id, rec.target_frame))
            out.append(float(action_success(facts, rec.verb or rec.action.split(" ", 1)[0], fin, ftg)))
        return out


def parse_interval(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split(","))
    return lo, hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny random model, 2 synthetic pairs, 8 vs 2 steps")
    parser.add_argument("--model", help="an egoframe model directory (default: a tiny random model)")
    parser.add_argument("--data", help="curated data set with the held-out pairs (pairs.parquet + shards)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--world", help="the world the data was curated from (true states for the oracle)")
    parser.add_argument("--oracle", help="oracle state reader directory (egoframe oracle train)")
    parser.add_argument("--vllm-cache", help="`egoframe vllm embed` cache of the data set (else the model's VLLM)")
    parser.add_argument("--n", type=int, default=32, help="held-out pairs")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ref-steps", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 25])
    parser.add_argument("--samplers", nargs="+", default=["dpmpp", "unipc"], choices=SAMPLERS)
    parser.add_argument("--interval", type=parse_interval, nargs="*", default=[(0.0, 0.6), (0.2, 1.0)],
                        help="extra guidance intervals 'lo,hi' tried on each fast sampler")
    parser.add_argument("--image-scale", type=float, default=1.5, help="s_x (small models want ~1.5, not 7.5)")
    parser.add_argument("--text-scale", type=float, default=1.5, help="s_c")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.batch, args.ref_steps, args.steps = 2, 2, 8, [2]
        args.interval = [(0.0, 0.5)]

    from egoframe.pipelines.loading import load_pipeline

    if args.model:
        pipe = load_pipeline(args.model)
    else:
        from egoframe.models.tiny import TinyConfig
        from egoframe.pipelines.lego import tiny_pipeline

        pipe = tiny_pipeline(TinyConfig(resolution=32, unet_channels=(16, 32)), ablation="lego")
    pipe.set_progress_bar_config(disable=True)
    if args.data:
        pairs = curated_pairs(args.data, args.split, pipe.resolution, args.n)
    else:
        pairs = synthetic_pairs(args.n, pipe.resolution)
    oracle = None
    if args.oracle:
        if not (args.world and pairs.records):
            raise SystemExit("--oracle needs --data (world-curated pairs) and --world (their true states)")
        oracle = Oracle(args.oracle, args.world)
    attach_vllm_inputs(pipe, pairs, args.vllm_cache)

    configs = [("euler_a", args.ref_steps, (0.0, 1.0))]
    for sampler in args.samplers:
        for steps in args.steps:
            configs.append((sampler, steps, (0.0, 1.0)))
            configs.extend((sampler, steps, iv) for iv in args.interval)
    scales = (args.image_scale, args.text_scale)
    targets = to_uint8(pairs.targets)
    from egoframe.evaluation.pixel import psnr
    from egoframe.evaluation.stats import bootstrap_ci, paired_bootstrap

    print(f"machine: {machine_line()}")
    print(f"model: {args.model or 'tiny random (quick)'}; {len(pairs)} pairs; s_x {scales[0]}, s_c {scales[1]}; "
          f"batch {args.batch}; seeds {args.seed}..{args.seed + len(pairs) - 1}")
    rows, ref = [], None
    for sampler, steps, interval in configs:
        images, per_image = generate(pipe, pairs, sampler, steps, interval, scales, args.batch, args.seed)
        psnrs = [psnr(g, t) for g, t in zip(images, targets)]
        success = oracle.success(pairs.records, images) if oracle else None
        row = dict(sampler=sampler, steps=steps, interval=interval, s=per_image, rows=unet_rows(steps, interval),
                   psnr=psnrs, success=success)
        ref = ref or row
        rows.append(row)
        print(f"  done {sampler} {steps} {interval}: {per_image:.3f} s/image", flush=True)

    print(f"{'sampler':<8} {'steps':>5} {'guided':>9} {'s/image':>8} {'speed-up':>9} {'UNet rows':>9} "
          f"{'PSNR dB':>8} {'success %':>10} {'Δ success vs ref [95% CI]':>28}")
    for r in rows:
        r["speedup"] = ref["s"] / r["s"]
        succ, delta = "-", "-"
        if r["success"] is not None:
            est = bootstrap_ci(r["success"])
            succ = f"{100 * est.value:.1f}"
            if r is not ref:
                d = paired_bootstrap(r["success"], ref["success"]).difference
                delta = f"{100 * d.value:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
        print(f"{r['sampler']:<8} {r['steps']:>5} {r['interval'][0]:>4.1f}-{r['interval'][1]:<4.1f} {r['s']:>8.3f} "
              f"{r['speedup']:>8.2f}x {r['rows']:>9} {np.mean(r['psnr']):>8.2f} {succ:>10} {delta:>28}")

    def ok(r):
        if r["success"] is not None:
            return np.mean(r["success"]) >= np.mean(ref["success"]) - 0.01
        return np.mean(r["psnr"]) >= np.mean(ref["psnr"]) - 0.5

    fast = [r for r in rows if r is not ref and r["speedup"] >= 4.0 and ok(r)]
    metric = "action success within 1 point" if oracle else "PSNR within 0.5 dB (no oracle)"
    if fast:
        best = max(fast, key=lambda r: r["speedup"])
        print(f"pick: {best['sampler']} {best['steps']} steps, guidance interval {best['interval']}: "
              f"{best['speedup']:.2f}x faster than euler_a {args.ref_steps}, {metric}")
    else:
        print(f"pick: none is >= 4x faster with {metric}")


if __name__ == "__main__":
    main()
