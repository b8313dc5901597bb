"""Metrics of the LEGO family (papers/001 Tables 1-4, ReasonPix2Pix, SmartEdit) with n and bootstrap CIs.

Pixel metrics (:mod:`.pixel`), LPIPS (:mod:`.lpips`), FID (:mod:`.inception`, :mod:`.frechet`), CLIP / DINO
(:mod:`.clip_dino`), EgoVLP (:mod:`.egovlp`), BLIP (:mod:`.blip`, :mod:`.text`), statistics (:mod:`.stats`),
the generation-set layout (:mod:`.generation_set`) and the runner behind ``egoframe eval`` (:mod:`.runner`).
Model code imports torch/transformers only when a model is built. See docs/evaluation.md.
"""

from egoframe.evaluation.pixel import l1, l2, psnr, ssim
from egoframe.evaluation.runner import METRICS, EvalConfig, EvalReport, MetricWeights, evaluate_folder
from egoframe.evaluation.stats import Estimate, PairedComparison, bootstrap_ci, paired_bootstrap

__all__ = [
    "METRICS", "EvalConfig", "EvalReport", "Estimate", "MetricWeights", "PairedComparison", "bootstrap_ci",
    "evaluate_folder", "l1", "l2", "paired_bootstrap", "psnr", "ssim",
]
