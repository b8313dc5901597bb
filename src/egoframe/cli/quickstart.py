"""`egoframe quickstart`: the whole LEGO recipe on the embedded world, on CPU, in about 15 minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("quickstart", help="Make the embedded world, curate, enrich, train VLLM + LEGO, report (CPU).")(
        quickstart
    )


def quickstart(
    out: Path = typer.Option(Path("egoframe-quickstart"), "--out", help="Work directory (a rerun resumes it)."),
    videos: int = typer.Option(120, "--videos", min=4, help="World videos to make (~6.5 actions each)."),
    vllm_steps: int = typer.Option(300, "--vllm-steps", min=1),
    diffusion_steps: int = typer.Option(900, "--diffusion-steps", min=1),
    vae: Optional[Path] = typer.Option(None, "--vae", help="VAE directory (default: the shipped one)."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    from rich.console import Console
    from rich.table import Table

    from egoframe.workflows.quickstart import QuickstartConfig, run_quickstart

    console = Console()
    config = QuickstartConfig(out_dir=str(out), videos=videos, vllm_steps=vllm_steps,
                              diffusion_steps=diffusion_steps, vae=str(vae) if vae else None, seed=seed,
                              progress=not quiet)
    summary = run_quickstart(config, say=lambda msg: console.print(msg, highlight=False))
    table = Table(title="quickstart: seconds per stage")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in summary["timings_s"].items():
        table.add_row(name, f"{seconds:.0f}")
    table.add_row("total", f"{summary['total_s']:.0f}")
    console.print(table)
    console.print(
        f"held-out PSNR: generated {summary['psnr_generated_db']} dB, copy of the input "
        f"{summary['psnr_copy_input_db']} dB ({summary['held_out_pairs']} pairs)"
    )
    console.print(f"model: {summary['model_dir']}\nreport: {out / 'report.md'}\ngrid: {summary['grid']}")
