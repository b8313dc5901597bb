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
    data: Optional[Path] = typer.Option(
        None, "--data", help="A curated data set: generate its --split into a generation set at --out "
                             "(samples.csv + OUT/<method>/, for `egoframe eval`)."
    ),
    split: str = typer.Option("test", "--split", help="With --data: train | test | all."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="With --data: the first N pairs by id."),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", help="With --data: VLLM embedding cache to condition on (`vllm embed` / "
                                   "`vllm import-features`, e.g. DATA/vllm_embeddings) instead of running a VLLM."
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
    grid: Optional[Path] = typer.Option(
        None, "--grid", help="Also write a picture of every row: input | generated [| target, when the rows have one]."
    ),
) -> None:
    from egoframe.pipelines.batch import GenerateSettings, generate_rows, rows_from_data, rows_from_inputs

    if data is not None:
        if image is not None or batch is not None:
            raise InputError("give one input form: --data, --image or --batch")
        if out is None:
            raise InputError("--data needs --out: the folder the generation set is written to")
        rows = rows_from_data(data, out, split=split, limit=limit, method=method)
    else:
        if embeddings is not None:
            raise InputError("--embeddings needs --data: the cache is keyed by the data set's pair ids")
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
        embeddings=str(embeddings) if embeddings else None,
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
    if data is not None:
        typer.echo(f"generation set: {write_data_set(rows, out, method)} (score it with `egoframe eval {out}`)")
    if grid is not None:
        typer.echo(f"grid: {write_rows_grid(rows, grid)}")


def write_rows_grid(rows, path: Path) -> str:
    """input | generated [| target] per row whose output exists, the action above each row."""
    from egoframe.utils.images import image_grid

    done = [r for r in rows if r.out.exists()]
    with_target = bool(done) and all(r.target is not None and r.target.exists() for r in done)
    columns = ["input", "generated"] + (["target"] if with_target else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    return image_grid([(r.action, [r.image, r.out] + ([r.target] if with_target else [])) for r in done],
                      columns, str(path))


def write_data_set(rows, out: Path, method: str) -> Path:
    """``out/samples.csv`` for the rows whose output exists: the data set's frames referenced where they are.
    Method columns already in ``out/samples.csv`` that cover every one of these rows are kept, so each
    method generated into the same folder adds its column."""
    from egoframe.evaluation.generation_set import SAMPLES_FILE, Sample, read_generation_set, write_generation_set

    out = out.resolve()
    samples = [Sample(sample_id=row.item_id, action=row.action, description=row.description or "",
                      input=row.image.resolve(), target=row.target.resolve() if row.target else None,
                      generated={method: row.out.resolve()})
               for row in rows if row.out.exists()]
    methods = [method]
    if (out / SAMPLES_FILE).is_file():
        existing = read_generation_set(out, check_files=False)
        before = {s.sample_id: s for s in existing.samples}
        kept = [m for m in existing.methods if m != method
                and all(s.sample_id in before and m in before[s.sample_id].generated for s in samples)]
        for s in samples:
            s.generated.update({m: before[s.sample_id].generated[m] for m in kept})
        methods = kept + methods
    return write_generation_set(out, samples, methods)


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
