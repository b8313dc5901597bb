"""`egoframe generate`: one frame, a folder of frames, or a CSV/JSONL of (image, action) rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from egoframe.cli.params import finite_float
from egoframe.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("generate", help="Generate the frame showing an action done in an input frame.")(generate)


def generate(
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="Input frame, or a folder of frames."),
    action: Optional[str] = typer.Option(None, "--action", "-a", help='Action label, e.g. "cut tomato".'),
    description: Optional[str] = typer.Option(None, "--description", "-d", help="Enriched description of the action."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output image (single) or folder (batch)."),
    batch: Optional[Path] = typer.Option(
        None, "--batch", help="CSV or JSONL with columns image, action[, description, out]."
    ),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="egoframe or Stable Diffusion 1.5 directory."),
    steps: Optional[int] = typer.Option(
        None, "--steps", min=1, max=1000, help="Denoising steps (default: the model's recommendation, else 100)."
    ),
    image_scale: Optional[float] = typer.Option(
        None, "--image-scale", parser=finite_float,
        help="Image guidance scale s_x (default: the model's, else LEGO's public code's 1.5).",
    ),
    text_scale: Optional[float] = typer.Option(
        None, "--text-scale", parser=finite_float,
        help="Text guidance scale s_c (default: the model's, else LEGO's public code's 7.5).",
    ),
    guidance_interval: Optional[str] = typer.Option(
        None, "--guidance-interval",
        help="LO,HI: guide only the steps i/n in [LO, HI), the rest run one UNet branch "
             "(default: the model's, else every step).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed; row k of a batch uses seed + k."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Frames generated per forward pass."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Regenerate outputs that already exist."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    channels_last: bool = typer.Option(
        False, "--channels-last", help="NHWC weights: the same model on faster convolution kernels (docs/performance.md)."
    ),
    method: str = typer.Option("lego", "--method", help="lego | ip2p | sdedit | proxedit (the model must fit it)."),
    strength: float = typer.Option(
        0.6, "--strength", parser=finite_float, help="SDEdit: noise strength of the input latent, (0, 1]."
    ),
    prox_quantile: float = typer.Option(
        0.7, "--prox-quantile", parser=finite_float, help="ProxEdit: threshold quantile of |guidance|."
    ),
    prox_mode: str = typer.Option("soft", "--prox-mode", help="ProxEdit: soft (l1) | hard (l0) proximal operator."),
) -> None:
    from egoframe.pipelines.batch import GenerateSettings, generate_rows, rows_from_inputs

    rows = rows_from_inputs(image=image, action=action, description=description, out=out, batch=batch)
    settings = GenerateSettings(
        model=str(model) if model else None,
        steps=steps,
        image_guidance_scale=image_scale,
        guidance_scale=text_scale,
        guidance_interval=parse_interval(guidance_interval) if guidance_interval else None,
        seed=seed,
        batch_size=batch_size,
        overwrite=overwrite,
        device=device,
        channels_last=channels_last,
        method=method,
        strength=strength,
        prox_quantile=prox_quantile,
        prox_mode=prox_mode,
    )
    report = generate_rows(rows, settings)
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    for path in report.written:
        typer.echo(str(path))
    if report.skipped:
        typer.echo(f"{len(report.skipped)} output(s) already existed and were kept (use --overwrite)", err=True)
    if report.too_large:
        typer.echo(f"{len(report.too_large)} input image(s) skipped: over Pillow's decompression-bomb limit",
                   err=True)
    if not report.written and not report.skipped:
        raise InputError("nothing was generated")


def parse_interval(text: str) -> tuple[float, float]:
    """``"0,0.6"`` -> (0.0, 0.6); the pipeline checks the range, this checks the form."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--guidance-interval {text!r}: expected LO,HI, e.g. 0,0.6") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"--guidance-interval {text!r}: LO and HI must be finite numbers")
    return lo, hi
