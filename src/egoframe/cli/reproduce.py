"""`egoframe reproduce --world`: LEGO's Tables 1 and 3 reproduced on the embedded world, with a report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from egoframe.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("reproduce", help="Train, generate and evaluate LEGO's Table 1/3 methods on the embedded world.")(
        reproduce)


def reproduce(
    world: Path = typer.Option(..., "--world", help="The embedded world (`egoframe world make`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Work directory (runs, generation set, eval); resumable."),
    small: bool = typer.Option(False, "--small", help="The CI size: 32 px, 150 steps per variant, 24 test pairs."),
    data: Optional[Path] = typer.Option(None, "--data", help="Curated + enriched data set to reuse."),
    vae: Optional[Path] = typer.Option(None, "--vae", help="Trained VAE directory to reuse."),
    vllm: Optional[Path] = typer.Option(None, "--vllm", help="Trained VLLM directory (embeds the data set)."),
    vllm_cache: Optional[Path] = typer.Option(None, "--vllm-cache", help="VLLM embedding cache to reuse."),
    oracle: Optional[Path] = typer.Option(None, "--oracle", help="Trained oracle directory to reuse."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Where REPORT.md + PNGs go (default OUT/report)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Model resolution (default 32 small / 64)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps per variant (default 150 / 1200)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Held-out pairs (default 24 / 96)."),
    sample_steps: Optional[int] = typer.Option(None, "--sample-steps", help="Denoising steps (default 20 / 50)."),
    oracle_steps: Optional[int] = typer.Option(None, "--oracle-steps"),
    seed: int = typer.Option(0, "--seed"),
    resamples: int = typer.Option(2000, "--resamples", min=100),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Extra model metrics, e.g. lpips,fid (give weights)."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights"),
    inception: Optional[Path] = typer.Option(None, "--inception"),
    clip: Optional[Path] = typer.Option(None, "--clip"),
    egovlp: Optional[Path] = typer.Option(None, "--egovlp"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
) -> None:
    from egoframe.workflows.reproduce import ReproduceConfig
    from egoframe.workflows.reproduce import reproduce as run
    from egoframe.evaluation.runner import MetricWeights

    def text(path):
        return str(path) if path is not None else None

    if resolution is not None and resolution % 8:
        raise ConfigError(f"--resolution must be a multiple of 8, got {resolution}")
    config = ReproduceConfig(
        world=str(world), out_dir=str(out), small=small, data=text(data), vae=text(vae), vllm=text(vllm),
        vllm_cache=text(vllm_cache), oracle=text(oracle), report_dir=text(report_dir), resolution=resolution,
        steps=steps, batch_size=batch_size, n_test=n_test, sample_steps=sample_steps, oracle_steps=oracle_steps,
        seed=seed, resamples=resamples, threads=threads,
        extra_metrics=[m.strip() for m in (metrics or "").split(",") if m.strip()],
        weights=MetricWeights(lpips=text(lpips_weights), inception=text(inception), clip=text(clip),
                              egovlp=text(egovlp)))
    command = "egoframe " + " ".join(sys.argv[1:]) if sys.argv[1:] else "egoframe reproduce"
    typer.echo(run(config, command=command))
