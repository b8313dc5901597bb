"""`egoframe recipe`: make the shipped embedded default from nothing, with one resumable command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("recipe", help="Make the shipped embedded model from nothing: world pairs, enrich, VLLM, embed, "
                               "LEGO training (resumable), optionally eval-world.")(recipe)


def recipe(
    out: Path = typer.Option(Path("egoframe-default"), "--out", help="Work directory (a rerun resumes it)."),
    pairs: int = typer.Option(24000, "--pairs", help="Simulated training pairs (`egoframe world pairs`)."),
    seed: int = typer.Option(101, "--seed", help="The pairs' world seed."),
    steps: int = typer.Option(4900, "--steps", help="Diffusion training steps (batch 32)."),
    decay_start: Optional[int] = typer.Option(None, "--decay-start",
                                              help="Cosine LR decay from this step to --steps (default: constant)."),
    change_weight: float = typer.Option(4.0, "--change-weight", help="Loss weight on the latents the edit changes."),
    vllm_pretrain_steps: int = typer.Option(6000, "--vllm-pretrain-steps", min=0,
                                            help="VLLM stage-0 (vision tower) pretraining steps."),
    vllm_reading: float = typer.Option(1.0, "--vllm-reading", min=0.0,
                                       help="Weight of stage 0's reading head (hand and object the description "
                                            "names; 0: off)."),
    vae: Optional[str] = typer.Option(None, "--vae", help="Autoencoder directory, 'train' (a KL VAE) or 'patch' (the "
                                                          "lossless patch code; default: the shipped one)."),
    resolution: int = typer.Option(64, "--resolution", help="Frame size the diffusion model works at (<= 128)."),
    attention_levels: int = typer.Option(2, "--attention-levels", min=1,
                                         help="UNet levels with self- and cross-attention, counted from the "
                                              "coarsest (2: 8 x 8 and 16 x 16, as shipped; 1: 8 x 8 only)."),
    eval_seed: Optional[int] = typer.Option(None, "--eval-seed",
                                            help="Score the result with eval-world on this world seed (one never "
                                                 "used for training or tuning)."),
    workers: int = typer.Option(2, "--workers", help="Processes for simulating pairs."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    from rich.console import Console
    from rich.table import Table

    from egoframe.workflows.recipe import RecipeConfig, run_recipe

    console = Console()
    config = RecipeConfig(out_dir=str(out), pairs=pairs, seed=seed, steps=steps, decay_start=decay_start,
                          change_weight=change_weight, vllm_pretrain_steps=vllm_pretrain_steps,
                          vllm_reading=vllm_reading, vae=vae, resolution=resolution, attention_levels=attention_levels,
                          eval_seed=eval_seed, workers=workers,
                          progress=not quiet)
    summary = run_recipe(config, say=lambda msg: console.print(msg, highlight=False))
    table = Table(title="recipe: seconds per stage")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in summary["timings_s"].items():
        table.add_row(name, f"{seconds:.0f}")
    table.add_row("total", f"{summary['total_s']:.0f}")
    console.print(table)
    for method, entry in (summary.get("eval_world") or {}).items():
        lo, hi = entry["action_success_ci"]
        console.print(f"{method:>10}: action success {100 * entry['action_success']:.1f} % "
                      f"[{100 * lo:.1f}, {100 * hi:.1f}]")
    console.print(f"model: {summary['model']}")
