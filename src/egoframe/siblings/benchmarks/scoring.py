"""The benchmark runner: :func:`run_benchmark` checks everything a user can get wrong (manifest, files, masks,
weights) before any scoring, then scores the generated images in batches and writes the report.

Sizes: pixel metrics and LPIPS compare at the generated image's size (or ``BenchConfig.size`` x ``size``,
SmartEdit's public evaluation used 256): the reference is resized with PIL bicubic on float data, the mask
with nearest neighbour. Model metrics (CLIP, DINO) take the original images and apply their own
preprocessing, as ``egoframe eval`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from egoframe.errors import InputError
from egoframe.evaluation import pixel
from egoframe.evaluation.clip_dino import ClipScorer, DinoScorer
from egoframe.evaluation.images import match_size, to_float01
from egoframe.evaluation.lpips import Lpips
from egoframe.siblings.benchmarks.manifest import BenchSample, find_generated, read_manifest
from egoframe.siblings.benchmarks.masks import (MASK_THRESHOLD, background_lpips, background_psnr, background_ssim,
                                                binarize_mask, foreground_crop, load_mask)
from egoframe.siblings.benchmarks.protocols import BenchConfig
from egoframe.siblings.benchmarks.report import BenchReport, summarise, write_report
from egoframe.utils.images import load_image


def _scoring_size(config: BenchConfig, generated_size: tuple[int, int]) -> tuple[int, int]:
    return (config.size, config.size) if config.size else generated_size  # (H, W)


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, with the same error as load_image for unreadable files."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, SyntaxError, ValueError):
        pass
    image = load_image(path)  # raises the one-line InputError
    return image.height, image.width


def _check_masks(samples: Sequence[BenchSample], config: BenchConfig, metrics: Sequence[str]) -> None:
    """Every mask before any model loads: input-sized, and at the scoring size non-empty with a background."""
    radius = int(pixel.SSIM_TRUNCATE * pixel.SSIM_SIGMA + 0.5)
    for sample in samples:
        where = f"sample {sample.sample_id}: "
        in_h, in_w = _image_size(sample.input)
        mask = load_mask(sample.mask, (in_w, in_h), where)
        size = _scoring_size(config, _image_size(sample.generated["generated"]))
        foreground = binarize_mask(mask, size)
        if not foreground.any():
            raise InputError(f"{where}mask {sample.mask} is empty after binarising at {MASK_THRESHOLD} "
                             f"({size[1]}x{size[0]})")
        if foreground.all():
            raise InputError(f"{where}mask {sample.mask} covers the whole image: no background to compare")
        if "bg-ssim" in metrics:
            if min(size) < 2 * radius + 1:
                raise InputError(f"{where}bg-ssim needs images of at least {2 * radius + 1} pixels a side")
            if foreground[radius:size[0] - radius, radius:size[1] - radius].all():
                raise InputError(f"{where}the background lies entirely within SSIM's {radius}-pixel border")


def _load_scorers(config: BenchConfig, metrics: Sequence[str]) -> dict:
    """Every model a metric needs, before scoring (MissingWeightsError names the flag and the files)."""
    scorers, wanted = {}, set(metrics)
    clip_metrics = sorted(wanted & {"fg-clip", "ins-clip", "clip-i", "clip-t"})
    if clip_metrics:
        needs_text = bool(wanted & {"fg-clip", "ins-clip", "clip-t"})
        scorers["clip"] = ClipScorer(config.weights.clip, device=config.device, long_text=config.long_text,
                                     what="/".join(clip_metrics), needs_text=needs_text)
    if "dino" in wanted:
        scorers["dino"] = DinoScorer(config.weights.dino, device=config.device)
    if "bg-lpips" in wanted:
        scorers["lpips"] = Lpips.from_dir(config.weights.lpips, config.lpips_net, device=config.device)
    return scorers


def run_benchmark(manifest: str | os.PathLike, generated_dir: str | os.PathLike,
                  out_dir: str | os.PathLike | None = None, config: BenchConfig | None = None,
                  protocol: str | None = None) -> BenchReport:
    """Score the generated images of one system on a benchmark manifest; write the report to ``out_dir``.

    Everything a user can get wrong (manifest, files, mask sizes, weights) is checked before scoring.
    """
    if config is None:
        config = BenchConfig(protocol=protocol or "")
    config.check()
    spec, metrics = config.spec, config.resolved_metrics()
    samples = read_manifest(manifest, spec.name)
    find_generated(samples, generated_dir, spec.name)
    if spec.name == "reason-edit":
        _check_masks(samples, config, metrics)
    notes: list[str] = []
    if "fg-clip" in metrics and not any(s.text("target_phrase") for s in samples):
        raise InputError("fg-clip needs a target_phrase for at least one sample; none has one "
                         "(drop fg-clip from the metrics or fill the column)")
    scorers = _load_scorers(config, metrics)

    n = len(samples)
    scores = {column: {m: np.full(n, np.nan) for m in metrics} for column in spec.columns}
    for start in range(0, n, config.batch_size):
        chunk = list(range(start, min(n, start + config.batch_size)))
        if spec.name == "reason-edit":
            _score_reason_edit(chunk, samples, metrics, scorers, config, scores["generated"], notes)
        else:
            _score_against_target(chunk, samples, spec.columns, metrics, scorers, config, scores, notes)
    if "fg-clip" in metrics:
        skipped = sum(1 for s in samples if not s.text("target_phrase"))
        if skipped:
            notes.append(f"fg-clip: {skipped} of {n} samples have no target_phrase and are not scored")
    summary = summarise(samples, scores, metrics, config, manifest, generated_dir, notes)
    report = BenchReport(Path(out_dir) if out_dir is not None else None, spec.name, samples, scores, summary, notes)
    if out_dir is not None:
        write_report(report)
    return report


def _resized(image: Image.Image, size: tuple[int, int], notes: list[str], name: str) -> np.ndarray:
    return match_size(to_float01(image, name), size, notes, name)


def _score_reason_edit(chunk, samples, metrics, scorers, config, out, notes) -> None:
    crops, phrases, crop_rows, images, instructions = [], [], [], [], []
    for i in chunk:
        sample = samples[i]
        generated = load_image(sample.generated["generated"])
        source = load_image(sample.input)
        size = _scoring_size(config, (generated.height, generated.width))
        gen = _resized(generated, size, notes, f"generated {sample.sample_id}")
        ref = _resized(source, size, notes, f"input {sample.sample_id}")
        foreground = binarize_mask(load_mask(sample.mask, source.size, f"sample {sample.sample_id}: "), size)
        if "bg-psnr" in metrics:
            out["bg-psnr"][i] = background_psnr(gen, ref, foreground)
        if "bg-ssim" in metrics:
            out["bg-ssim"][i] = background_ssim(gen, ref, foreground)
        if "bg-lpips" in metrics:
            out["bg-lpips"][i] = background_lpips(scorers["lpips"], gen, ref, foreground)
        if "fg-clip" in metrics and sample.text("target_phrase"):
            crops.append(foreground_crop(gen, foreground))
            phrases.append(sample.text("target_phrase"))
            crop_rows.append(i)
        if "ins-clip" in metrics:
            images.append(generated)
            instructions.append(sample.text("instruction"))
    if crops:
        out["fg-clip"][crop_rows] = scorers["clip"].image_text(crops, phrases)
    if images:
        out["ins-clip"][chunk] = scorers["clip"].image_text(images, instructions)


def _score_against_target(chunk, samples, columns, metrics, scorers, config, scores, notes) -> None:
    targets = [load_image(samples[i].target) for i in chunk]
    captions = [samples[i].text("target_caption") for i in chunk]
    for column in columns:
        out = scores[column]
        generated = [load_image(samples[i].generated[column]) for i in chunk]
        if {"l1", "l2"} & set(metrics):
            for i, gen_image, target in zip(chunk, generated, targets):
                size = _scoring_size(config, (gen_image.height, gen_image.width))
                gen = _resized(gen_image, size, notes, f"generated {samples[i].sample_id}")
                ref = _resized(target, size, notes, f"target {samples[i].sample_id}")
                for metric in ("l1", "l2"):
                    if metric in metrics:
                        out[metric][i] = getattr(pixel, metric)(gen, ref)
        if "clip-i" in metrics:
            out["clip-i"][chunk] = scorers["clip"].image_image(generated, targets)
        if "clip-t" in metrics:
            out["clip-t"][chunk] = scorers["clip"].image_text(generated, captions)
        if "dino" in metrics:
            out["dino"][chunk] = scorers["dino"].image_image(generated, targets)
