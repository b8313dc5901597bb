"""Reuse of VLLM work: a 16-sample sweep (seeds x guidance scales) over one input frame and action.

LegoPipeline caches the attached VLLM's results per (frame bytes, action, extraction config), so the sweep
runs the VLLM once instead of 16 times. Same pipeline, same calls, cache on vs off (``vllm_cache_size = 0``),
interleaved; the number of VLLM runs is counted, not assumed.

    python benchmarks/bench_vllm_reuse.py --quick
    python benchmarks/bench_vllm_reuse.py --samples 16 --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import interleaved, machine_line  # noqa: E402


def build(resolution: int):
    from egoframe.models.tiny import TinyConfig
    from egoframe.pipelines.lego import tiny_pipeline
    from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer

    config = TinyConfig(resolution=resolution)
    pipe = tiny_pipeline(config, ablation="lego")
    c = config.conditioning
    tokenizer = build_word_tokenizer(["the person takes the red cup with the right hand from the counter"])
    patch = resolution // int(c["num_image_tokens"] ** 0.5)
    # The embedded VLLM's layout (TinyVllmConfig defaults) resized to this conditioning's sizes.
    vllm = build_tiny_vllm(tokenizer, TinyVllmConfig(image_size=resolution, patch_size=patch,
                                                     text_hidden_size=c["d_llm"]), seed=0)
    pipe.attach_vllm(vllm)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 samples, 2 steps, 1 round")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.samples, args.steps, args.repeats = 4, 2, 1

    import logging

    import egoframe.pipelines.lego as lego  # the pipeline's own binding of extract_vllm_embeddings
    from PIL import Image

    # A random VLLM writes long nonsense answers; the cut warning per sample would drown the table.
    logging.getLogger("egoframe.models.text").setLevel(logging.ERROR)
    pipe = build(args.resolution)
    calls = {"n": 0}
    real = lego.extract_vllm_embeddings

    def counted(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    lego.extract_vllm_embeddings = counted
    img = np.full((args.resolution, args.resolution, 3), 150, np.uint8)
    img[8:24, 10:26] = (220, 40, 40)
    frame = Image.fromarray(img)
    scales = [1.5, 2.5, 4.0, 7.5]

    def sweep(cache_size: int):
        def run():
            pipe.vllm_cache_size = cache_size
            pipe.clear_vllm_cache()  # every sweep starts cold: the cache pays off only within the sweep
            for i in range(args.samples):
                pipe(frame, "take cup", num_inference_steps=args.steps, image_guidance_scale=scales[i % 4],
                     generator=torch.Generator().manual_seed(i // 4), output_type="pil", progress=False)
        return run

    with torch.no_grad():
        calls["n"] = 0
        sweep(64)()
        cached_runs = calls["n"]
        calls["n"] = 0
        sweep(0)()
        uncached_runs = calls["n"]
        result = interleaved({"cache off": sweep(0), "cache on": sweep(64)}, args.repeats, warmup=0)
    print(f"machine: {machine_line()}")
    print(f"sweep: {args.samples} samples (seeds x image scales) of one frame + action, {args.steps} steps, "
          f"tiny LEGO at {args.resolution} px + tiny VLLM; medians of {args.repeats} interleaved rounds")
    print(f"VLLM runs per sweep: cache off {uncached_runs}, cache on {cached_runs}")
    off, on = result["cache off"]["median_s"], result["cache on"]["median_s"]
    print(f"{'variant':<10} {'s/sweep':>8} {'s/sample':>9} {'speed-up':>9}")
    for name, med in (("cache off", off), ("cache on", on)):
        print(f"{name:<10} {med:>8.2f} {med / args.samples:>9.3f} {off / med:>8.2f}x")


if __name__ == "__main__":
    main()
