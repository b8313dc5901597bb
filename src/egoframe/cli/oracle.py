"""`egoframe oracle train`: the embedded world's state reader behind the action-success metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    oracle = typer.Typer(help="Oracle state reader of the embedded world (action success).", no_args_is_help=True)
    oracle.command("train", help="Train the frame -> scene-facts reader on a world; report held-out accuracy.")(train)
    app.add_typer(oracle, name="oracle")


def train(
    world: Path = typer.Option(..., "--world", help="World directory (`egoframe world make`)."),
    out: Path = typer.Option(..., "--out", help="Output directory: oracle.safetensors, config, report."),
    steps: int = typer.Option(1500, "--steps", min=1),
    resolution: int = typer.Option(64, "--resolution", help="Frames are read at this square size."),
    frame_stride: int = typer.Option(6, "--frame-stride", min=1, help="Every k-th frame of each video."),
    max_videos: Optional[int] = typer.Option(None, "--max-videos", help="Use at most this many videos per split."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
) -> None:
    from egoframe.evaluation.oracle import OracleConfig, train_oracle

    config = OracleConfig(world=str(world), out_dir=str(out), steps=steps, resolution=resolution,
                          frame_stride=frame_stride, max_videos=max_videos, batch_size=batch_size, seed=seed,
                          threads=threads)
    report = train_oracle(config)
    summary = {k: report[k] for k in ("train_frames", "test_frames", "mean_fact_accuracy", "test_actions")}
    summary["all_facts_exact"] = report["all_facts_exact"]["value"]
    if report.get("target_action_success"):
        summary["target_action_success"] = report["target_action_success"]["value"]
        summary["input_action_success"] = report["input_action_success"]["value"]
    typer.echo(json.dumps(summary, indent=1))
    typer.echo(f"-> {out}")
