"""`egoframe oracle train`: the embedded world's state reader behind the action-success metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    oracle = typer.Typer(help="Oracle state reader of the embedded world (action success).", no_args_is_help=True)
    oracle.command("train", help="Train the frame -> scene-facts reader (on unlimited simulated frames by default); "
                                 "resumable.")(train)
    oracle.command("evaluate", help="Read a world's decoded video frames with an oracle and report its accuracy.")(
        evaluate)
    app.add_typer(oracle, name="oracle")


def train(
    out: Path = typer.Option(..., "--out", help="Output directory: oracle.safetensors, config, report (a rerun resumes)."),
    world: Optional[Path] = typer.Option(None, "--world", help="World whose test-split video frames are the report "
                                         "(and, with --source world, the training frames)."),
    source: str = typer.Option("stream", "--source", help="stream: fresh simulated frames; world: --world's videos."),
    steps: int = typer.Option(8000, "--steps", min=1),
    resolution: int = typer.Option(64, "--resolution", help="Frames are read at this square size."),
    hidden: int = typer.Option(512, "--hidden", min=8, help="Width of the reader's MLP layer."),
    frame_stride: int = typer.Option(6, "--frame-stride", min=1, help="Every k-th frame of each video."),
    max_videos: Optional[int] = typer.Option(None, "--max-videos", help="Use at most this many videos per split."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate of the one-cycle schedule."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from this oracle's weights "
                                             "(same architecture) and train on with a fresh schedule."),
    class_balance: float = typer.Option(0.0, "--class-balance", min=0.0, max=1.0, help="Stream source: weight "
                                        "each class's loss by its share ** -this (rare states count more; 0: off)."),
    mask_hidden: bool = typer.Option(False, "--mask-hidden/--no-mask-hidden", help="Stream source: no label for "
                                     "facts whose objects the frame hides (under an arm, behind a held cup)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: cores - workers)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    from egoframe.evaluation.oracle import OracleConfig, train_oracle

    config = OracleConfig(source=source, world=str(world or ""), out_dir=str(out), steps=steps, resolution=resolution,
                          hidden=hidden, frame_stride=frame_stride, max_videos=max_videos, batch_size=batch_size,
                          seed=seed, lr=lr, init_from=str(init_from or ""), class_balance=class_balance,
                          mask_hidden=mask_hidden, threads=threads)
    report = train_oracle(config, progress=progress)
    typer.echo(json.dumps(_summary(report), indent=1))
    typer.echo(f"-> {out}")


def evaluate(
    world: Path = typer.Option(..., "--world", help="World directory (`egoframe world make`)."),
    oracle: Optional[Path] = typer.Option(None, "--oracle", help="Oracle directory (default: the shipped oracle)."),
    split: str = typer.Option("all", "--split", help="train | test | all videos of the world."),
    frame_stride: int = typer.Option(3, "--frame-stride", min=1),
    max_videos: Optional[int] = typer.Option(None, "--max-videos"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the full report here (JSON)."),
    robustness: bool = typer.Option(True, "--robustness/--no-robustness",
                                    help="Also score degraded targets and garbage frames of fresh simulated videos."),
) -> None:
    from egoframe.evaluation.oracle import OracleReader, robustness_report, video_report
    from egoframe.utils.checkpoint import atomic_write_json

    if split not in ("train", "test", "all"):
        raise typer.BadParameter("--split must be train, test or all")
    reader = OracleReader.load(oracle)
    report = video_report(reader, str(world), frame_stride=frame_stride, max_videos=max_videos, split=split)
    if robustness:
        from egoframe.world import WorldManifest

        # simulated videos of the same world seed, numbered after the world's own (so: new scenes)
        report["robustness"] = robustness_report(reader, seed=WorldManifest.load(str(world)).config.seed + 1_000_003)
    if out:
        atomic_write_json(str(out), report)
    typer.echo(json.dumps({**_summary(report), **({"robustness": report["robustness"]} if robustness else {})},
                          indent=1))


def _summary(report: dict) -> dict:
    summary = {k: report[k] for k in ("train_frames", "test_frames", "mean_fact_accuracy", "mean_shown_fact_accuracy",
                                      "test_actions") if k in report}
    if report.get("hidden_facts"):
        summary["hidden_fact_share"] = report["hidden_facts"]["share"]
    for key in ("all_facts_exact", "shown_facts_exact", "target_action_success", "target_window_action_success", "input_action_success"):
        if report.get(key):
            summary[key] = report[key]["value"]
    if report.get("most_common_errors"):
        summary["most_common_errors"] = dict(list(report["most_common_errors"].items())[:5])
    return summary
