"""The benchmark report: per group (all, each scenario, each category) and column the mean of every metric with
its n and 95 % percentile-bootstrap interval (:mod:`egoframe.evaluation.stats`), for ReasonPix2Pix (papers/003
Table 3) also the paired difference reasoning - direct; written as ``report.json``, ``report.md`` and
``scores.csv``."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from egoframe.evaluation import stats
from egoframe.siblings.benchmarks.manifest import BenchSample
from egoframe.siblings.benchmarks.masks import MASK_THRESHOLD
from egoframe.siblings.benchmarks.protocols import GROUP_COLUMNS, METRIC_INFO, BenchConfig


@dataclass
class BenchReport:
    out_dir: Path | None
    protocol: str
    samples: list[BenchSample]
    scores: dict[str, dict[str, np.ndarray]]  # column -> metric -> (n,), NaN where a metric does not apply
    summary: dict
    notes: list[str]


def _groups(samples: Sequence[BenchSample]) -> dict[str, np.ndarray]:
    groups = {"all": np.arange(len(samples))}
    for key in GROUP_COLUMNS:
        values = sorted({s.text(key) for s in samples if s.text(key)})
        for value in values:
            groups[f"{key}={value}"] = np.array([i for i, s in enumerate(samples) if s.text(key) == value])
    return groups


def summarise(samples, scores, metrics, config: BenchConfig, manifest, generated_dir, notes) -> dict:
    spec = config.spec
    results: dict[str, dict] = {}
    paired: dict[str, dict] = {}
    for group, index in _groups(samples).items():
        entry = {}
        for column in spec.columns:
            entry[column] = {}
            for metric in metrics:
                values = scores[column][metric][index]
                values = values[~np.isnan(values)]
                if values.size == 0:
                    entry[column][metric] = {"value": None, "n": 0}
                    continue
                entry[column][metric] = stats.bootstrap_ci(values, config.confidence, config.resamples, config.seed,
                                                           name=f"{column} {metric}").as_dict()
        results[group] = entry
        if spec.name == "rp2p":
            paired[group] = {}
            for metric in metrics:
                a, b = scores["reasoning"][metric][index], scores["direct"][metric][index]
                keep = ~(np.isnan(a) | np.isnan(b))
                if keep.sum() == 0 or not (np.all(np.isfinite(a[keep])) and np.all(np.isfinite(b[keep]))):
                    paired[group][metric] = {"skipped": "no finite paired scores"}
                    continue
                paired[group][metric] = stats.paired_bootstrap(a[keep], b[keep], config.confidence, config.resamples,
                                                               config.seed).as_dict()
    unique = sorted(set(notes))
    config_dict = asdict(config)
    summary = {
        "protocol": spec.name, "title": spec.title, "manifest": str(manifest), "generated": str(generated_dir),
        "n": len(samples), "columns": list(spec.columns), "metrics": list(metrics),
        "higher_is_better": {m: METRIC_INFO[m][0] for m in metrics},
        "definitions": {m: METRIC_INFO[m][1] for m in metrics},
        "mask_threshold": MASK_THRESHOLD if spec.name == "reason-edit" else None,
        "scoring_size": config.size or "generated image's size",
        "confidence": config.confidence, "resamples": config.resamples, "seed": config.seed,
        "results": results, "notes": unique if len(unique) <= 5 else unique[:3] + [f"... and {len(unique) - 3} more"],
        "config": config_dict,
    }
    if paired:
        summary["paired"] = {"difference": "reasoning - direct", "per_group": paired}
    return summary


def _cell(estimate: dict) -> str:
    if estimate.get("value") is None:
        return "n=0"

    def fmt(x):
        return f"{x:.4g}" if math.isfinite(x) else ("inf" if x > 0 else "-inf")

    return f"{fmt(estimate['value'])} [{fmt(estimate['low'])}, {fmt(estimate['high'])}] n={estimate['n']}"


def report_markdown(summary: dict) -> str:
    conf = round(summary["confidence"] * 100)
    metrics = summary["metrics"]
    arrows = ["↑" if summary["higher_is_better"][m] else "↓" for m in metrics]
    size = summary["scoring_size"]
    size = size if isinstance(size, str) else f"{size} x {size} px"
    lines = [f"# {summary['title']}", "",
             f"manifest `{summary['manifest']}`, generated `{summary['generated']}`; {summary['n']} samples; "
             f"pixel metrics at the {size}.",
             f"Each cell: mean [{conf}% percentile-bootstrap interval] n; {summary['resamples']} resamples, "
             f"seed {summary['seed']}. Cosines are raw (the papers print x100).", ""]
    for group, entry in summary["results"].items():
        lines += [f"## {group}", "", "| | " + " | ".join(f"{m} {a}" for m, a in zip(metrics, arrows)) + " |",
                  "|---" * (len(metrics) + 1) + "|"]
        for column, values in entry.items():
            lines.append(f"| {column} | " + " | ".join(_cell(values[m]) for m in metrics) + " |")
        lines.append("")
        paired = summary.get("paired", {}).get("per_group", {}).get(group)
        if paired:
            lines += [f"Paired {summary['paired']['difference']} ({conf}% interval, two-sided bootstrap p):", "",
                      "| metric | difference | p |", "|---|---|---|"]
            for metric in metrics:
                item = paired[metric]
                if "skipped" in item:
                    lines.append(f"| {metric} | skipped: {item['skipped']} | |")
                else:
                    lines.append(f"| {metric} | {_cell(item['difference'])} | "
                                 f"{stats.format_p(item['p_value'], summary['resamples'])} |")
            lines.append("")
    lines += ["## Definitions", ""] + [f"- **{m}** ({'↑' if summary['higher_is_better'][m] else '↓'}): "
                                       f"{summary['definitions'][m]}" for m in metrics]
    if summary["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: BenchReport) -> None:
    out = report.out_dir
    out.mkdir(parents=True, exist_ok=True)
    metrics = report.summary["metrics"]
    with (out / "scores.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "column", "scenario", "category", *metrics])
        for column, per_metric in report.scores.items():
            for i, sample in enumerate(report.samples):
                values = [per_metric[m][i] for m in metrics]
                writer.writerow([sample.sample_id, column, sample.text("scenario") or "", sample.text("category") or "",
                                 *("" if np.isnan(v) else repr(float(v)) for v in values)])
    (out / "report.json").write_text(json.dumps(report.summary, indent=1, allow_nan=True))
    (out / "report.md").write_text(report_markdown(report.summary))
