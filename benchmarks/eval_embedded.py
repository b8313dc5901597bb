"""Evaluate the embedded default on held-out world pairs: does the action happen, and what helps?

Methods (same model, same seeds, differing only in the text ψ reads):
  vllm        the attached VLLM writes the description and the VLLM embeddings (what `egoframe generate` does)
  annotation  the enriched description from the annotation (the rule enricher), VLLM embeddings on the fly
  label       the bare action label as the description
  copy        the input frame unchanged (doing nothing)
Metrics: the oracle's action success and state accuracy (the embedded stand-ins for EgoVLP and the user
study), PSNR and SSIM against the true target, each with n and a bootstrap 95 % interval.

  python benchmarks/eval_embedded.py --model src/egoframe/assets/default-model --data DATA --world WORLD \
      --oracle ORACLE --out runs/eval-embedded
"""

from __future__ import annotations

import argparse
import os
import shutil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="curated + enriched world data set")
    parser.add_argument("--world", required=True)
    parser.add_argument("--oracle", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--image-scale", type=float, default=1.5)
    parser.add_argument("--text-scale", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from egoframe.data.records import load_records
    from egoframe.enrichment import attach_descriptions
    from egoframe.evaluation.generation_set import Sample, write_generation_set
    from egoframe.evaluation.runner import EvalConfig, MetricWeights, evaluate_folder
    from egoframe.pipelines.loading import load_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    records = sorted((r for r in load_records(args.data) if r.split == "test"), key=lambda r: r.id)
    attach_descriptions(records, args.data)
    keep = sorted(np.random.default_rng(args.seed).choice(len(records), size=min(args.n, len(records)), replace=False))
    records = [records[i] for i in keep]
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    res = pipe.resolution
    root = args.out
    methods = ("vllm", "annotation", "label")
    for sub in ("inputs", "targets", "copy", *methods):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    samples = []
    for k, rec in enumerate(records):
        paths = {sub: os.path.join(root, sub, f"{rec.id}.png") for sub in ("inputs", "targets", "copy", *methods)}
        shutil.copyfile(os.path.join(args.data, rec.input_path), paths["inputs"])
        shutil.copyfile(os.path.join(args.data, rec.target_path), paths["targets"])
        frame = Image.open(paths["inputs"]).convert("RGB")
        frame.resize((res, res), Image.Resampling.BICUBIC).save(paths["copy"])
        for method, description in (("vllm", None), ("annotation", rec.description), ("label", rec.action)):
            if not os.path.exists(paths[method]):
                out = pipe(frame, rec.action, description=description, num_inference_steps=args.steps,
                           image_guidance_scale=args.image_scale, guidance_scale=args.text_scale,
                           generator=torch.Generator().manual_seed(args.seed + k), progress=False)
                out.images[0].save(paths[method])
        samples.append(Sample(sample_id=rec.id, action=rec.action, description=rec.description,
                              input=paths["inputs"], target=paths["targets"],
                              generated={m: paths[m] for m in ("copy", *methods)},
                              extra={"video_id": rec.video_id, "input_frame": str(rec.input_frame),
                                     "target_frame": str(rec.target_frame), "verb": rec.verb}))
        print(f"{k + 1}/{len(records)} {rec.id}", flush=True)
    write_generation_set(root, samples, ["copy", *methods])
    write_grid(samples[:8], os.path.join(root, "grid.png"), res)
    report = evaluate_folder(root, out_dir=os.path.join(root, "eval"), config=EvalConfig(
        metrics=["action-success", "state-acc", "psnr", "ssim"],
        weights=MetricWeights(oracle=args.oracle, world=args.world), seed=args.seed))
    print(open(os.path.join(root, "eval", "summary.md")).read())
    return report


def write_grid(samples, path: str, size: int) -> None:
    """Rows: input | VLLM description | annotation description | label only | target, with the action."""
    from PIL import Image, ImageDraw

    columns = ["input", "vllm", "annotation", "label", "target"]
    cell, label_h = 2 * size, 14
    grid = Image.new("RGB", (cell * len(columns), label_h + len(samples) * (cell + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(columns):
        draw.text((c * cell + 4, 1), name, fill="black")
    for r, sample in enumerate(samples):
        top = label_h + r * (cell + label_h)
        draw.text((4, top + 1), sample.action, fill="black")
        paths = [sample.input, sample.generated["vllm"], sample.generated["annotation"], sample.generated["label"],
                 sample.target]
        for c, image_path in enumerate(paths):
            image = Image.open(image_path).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(image, (c * cell, top + label_h))
    grid.save(path)


if __name__ == "__main__":
    main()
