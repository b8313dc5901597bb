"""Batch generation: rows of (image, action[, description]) -> image files, resumable.

A row whose output file exists is skipped, so an interrupted batch continues where it stopped. Row k
always uses seed + k, so results do not depend on the batch size or on which rows were skipped.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from egoframe.errors import InputError
from egoframe.utils.images import IMAGE_EXTENSIONS, load_image


@dataclass
class GenerateRow:
    image: Path
    action: str
    out: Path
    description: str | None = None
    index: int = 0


@dataclass
class GenerateSettings:
    model: str | None = None
    # None: the model's recommended value (sampling.json), else the paper's (100 steps, 7.5 / 1.5).
    steps: int | None = None
    image_guidance_scale: float | None = None
    guidance_scale: float | None = None
    guidance_interval: tuple[float, float] | None = None  # fractions of the steps that are guided
    seed: int = 0
    batch_size: int = 8
    overwrite: bool = False
    device: str = "cpu"
    channels_last: bool = False  # NHWC weights (LegoPipeline.enable_channels_last): faster convolutions
    method: str = "lego"  # lego | ip2p | sdedit | proxedit (egoframe.pipelines.baselines)
    strength: float = 0.6  # SDEdit: how far the input latent is noised
    prox_quantile: float = 0.7  # ProxEdit: threshold quantile of |guidance difference|
    prox_mode: str = "soft"  # ProxEdit: soft (l1) | hard (l0) proximal operator


@dataclass
class GenerateReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rows_from_inputs(
    image: Path | None = None,
    action: str | None = None,
    description: str | None = None,
    out: Path | None = None,
    batch: Path | None = None,
) -> list[GenerateRow]:
    """Turn the CLI's three input forms (one file, a folder, a CSV/JSONL) into rows."""
    if batch is not None:
        if image is not None:
            raise InputError("give either --image or --batch, not both")
        return read_batch_file(batch, out_dir=out, default_action=action)
    if image is None:
        raise InputError("give an input frame with --image (a file or a folder) or a --batch file")
    if action is None or not action.strip():
        raise InputError("action text is empty: give --action, e.g. --action 'cut tomato'")
    if image.is_dir():
        files = sorted(p for p in image.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {image}")
        out_dir = out or image.with_name(image.name + "-generated")
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out must be a folder when --image is a folder: {out_dir}")
        return [
            GenerateRow(image=f, action=action, description=description, out=out_dir / f"{f.stem}.png", index=i)
            for i, f in enumerate(files)
        ]
    if out is None:
        out = image.with_name(f"{image.stem}-generated.png")
    if out.is_dir():
        out = out / f"{image.stem}.png"
    return [GenerateRow(image=image, action=action, description=description, out=out)]


def read_batch_file(path: Path, out_dir: Path | None = None, default_action: str | None = None) -> list[GenerateRow]:
    """Rows from a CSV (header: image, action[, description, out]) or a JSONL of such objects.

    Relative image/out paths are resolved against the batch file's folder.
    """
    if not path.exists():
        raise InputError(f"batch file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                records = list(csv.DictReader(fh))
        elif suffix in (".jsonl", ".ndjson"):
            records = []
            with open(path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            obj = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise InputError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
                        if not isinstance(obj, dict):
                            raise InputError(f"{path}:{n}: each line must be a JSON object")
                        records.append(obj)
        else:
            raise InputError(f"batch file must be .csv or .jsonl, got {path.name}")
    except UnicodeDecodeError:
        raise InputError(f"batch file {path} is not UTF-8 text") from None
    if not records:
        raise InputError(f"batch file {path} has no rows")
    base = path.parent
    out_dir = out_dir or base / f"{path.stem}-generated"
    rows = []
    for i, rec in enumerate(records):
        where = f"{path.name} row {i + 1}"
        img = (rec.get("image") or "").strip() if isinstance(rec.get("image"), str) else ""
        if not img:
            raise InputError(f"{where}: missing 'image'")
        act = rec.get("action") or default_action
        if not isinstance(act, str) or not act.strip():
            raise InputError(f"{where}: missing or empty 'action'")
        image_path = Path(img) if os.path.isabs(img) else base / img
        out = rec.get("out")
        out_path = (Path(out) if os.path.isabs(out) else base / out) if out else out_dir / f"{i:05d}-{image_path.stem}.png"
        desc = rec.get("description") or None
        rows.append(GenerateRow(image=image_path, action=act, description=desc, out=out_path, index=i))
    return rows


def generate_rows(rows: list[GenerateRow], settings: GenerateSettings, pipe=None) -> GenerateReport:
    """Generate every row's frame; rows whose output exists are skipped unless ``overwrite``."""
    import torch

    report = GenerateReport()
    todo = []
    for row in rows:
        if row.out.exists() and not settings.overwrite:
            report.skipped.append(row.out)
        else:
            todo.append(row)
    if not todo:
        return report
    # Read every input before loading the model, so a bad file fails fast with its name.
    images = [load_image(row.image, notes=report.notes) for row in todo]
    from egoframe.pipelines.baselines import as_method, method_kwargs

    if pipe is None:
        pipe = load_model(settings.model, report.notes)
    pipe = as_method(pipe, settings.method)
    chosen = resolve_sampling(pipe, settings, report.notes)
    sampling = method_kwargs(settings.method, chosen["image_guidance_scale"], chosen["guidance_scale"],
                             settings.strength, settings.prox_quantile, settings.prox_mode,
                             chosen["guidance_interval"])
    pipe.to(settings.device)
    if settings.channels_last:
        pipe.enable_channels_last()
    pipe.set_progress_bar_config(desc="denoising", leave=False)
    for start in range(0, len(todo), settings.batch_size):
        chunk = todo[start : start + settings.batch_size]
        generators = [torch.Generator(settings.device).manual_seed(settings.seed + row.index) for row in chunk]
        result = pipe(
            images[start : start + len(chunk)],
            [row.action for row in chunk],
            description=[row.description for row in chunk],
            num_inference_steps=chosen["num_inference_steps"],
            generator=generators,
            **sampling,
        )
        report.notes.extend(result.notes)
        for row, img in zip(chunk, result.images):
            row.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = row.out.with_name(row.out.name + ".tmp.png")
            img.save(tmp)
            os.replace(tmp, row.out)  # atomic: a killed run never leaves a half-written output
            report.written.append(row.out)
    return report


def resolve_sampling(pipe, settings: GenerateSettings, notes: list[str]) -> dict:
    """Explicit settings win; then the model's recommendation; then LEGO's published values."""
    from egoframe.pipelines.lego import choose_sampling

    given = {"num_inference_steps": settings.steps, "image_guidance_scale": settings.image_guidance_scale,
             "guidance_scale": settings.guidance_scale, "guidance_interval": settings.guidance_interval}
    recommended = getattr(pipe, "sampling_defaults", {}) or {}
    chosen = choose_sampling(recommended, given)
    from_model = [k for k, v in given.items() if v is None and k in recommended]
    if from_model:
        notes.append("sampling recommended by the model: " + ", ".join(f"{k}={chosen[k]}" for k in from_model))
    return chosen


def load_model(model: str | None, notes: list[str]):
    from egoframe.pipelines.default import load_default_pipeline
    from egoframe.pipelines.loading import load_pipeline

    return load_pipeline(model) if model else load_default_pipeline(notes)
