"""Benchmark runners for the sibling systems: Reason-Edit (SmartEdit), MagicBrush and ReasonPix2Pix.

A benchmark is a **manifest** (CSV, JSON or JSONL; one row per sample, paths relative to the manifest's
folder) plus a folder of **generated** images named by sample id (``<generated>/<id>.png``; ReasonPix2Pix:
``<generated>/direct/<id>.png`` and ``<generated>/reasoning/<id>.png``). :func:`run_benchmark` scores them
and writes ``report.json``, ``report.md`` and ``scores.csv``; every number comes with its n and a 95 %
percentile-bootstrap interval (:mod:`egoframe.evaluation.stats`). docs/siblings.md, "Benchmarks", is the
user's description; the definitions in :mod:`.protocols` (``METRIC_INFO``) are the exact ones.

Protocols: ``reason-edit`` (SmartEdit), ``magicbrush`` and ``rp2p`` (ReasonPix2Pix), each described in
:mod:`.protocols`.

Sizes: pixel metrics and LPIPS compare at the generated image's size (or ``BenchConfig.size`` x ``size``,
SmartEdit's public evaluation used 256): the reference is resized with PIL bicubic on float data, the mask
with nearest neighbour. Model metrics (CLIP, DINO) take the original images and apply their own
preprocessing, as ``egoframe eval`` does.

Modules, each doing one thing:

- :mod:`.protocols`: the protocols, the metric definitions and :class:`BenchConfig`.
- :mod:`.manifest`: reading, writing and building manifests; finding the generated images.
- :mod:`.masks`: masks and the masked (background / foreground) metrics of Reason-Edit.
- :mod:`.scoring`: :func:`run_benchmark`, the checks before scoring and the scoring itself.
- :mod:`.report`: the summary with its intervals, ``report.md``, ``report.json`` and ``scores.csv``.
"""

from egoframe.siblings.benchmarks.manifest import (BenchSample, find_generated, read_manifest,
                                                   reason_edit_manifest_from_release, write_manifest)
from egoframe.siblings.benchmarks.masks import (MASK_THRESHOLD, background_lpips, background_psnr, background_ssim,
                                                binarize_mask, fill_foreground, foreground_crop, load_mask)
from egoframe.siblings.benchmarks.protocols import GROUP_COLUMNS, METRIC_INFO, PROTOCOLS, BenchConfig, Protocol
from egoframe.siblings.benchmarks.report import BenchReport, report_markdown, summarise, write_report
from egoframe.siblings.benchmarks.scoring import run_benchmark

__all__ = [
    # protocols and settings
    "Protocol", "PROTOCOLS", "METRIC_INFO", "GROUP_COLUMNS", "BenchConfig",
    # manifests
    "BenchSample", "read_manifest", "write_manifest", "reason_edit_manifest_from_release", "find_generated",
    # masks and masked metrics
    "MASK_THRESHOLD", "load_mask", "binarize_mask", "fill_foreground", "background_psnr", "background_ssim",
    "background_lpips", "foreground_crop",
    # scoring and report
    "run_benchmark", "BenchReport", "summarise", "report_markdown", "write_report",
]
