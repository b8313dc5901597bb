"""Batch generation: rows of (image, action[, description]) -> image files, resumable.

A row whose output file exists is skipped, so an interrupted batch continues where it stopped. Row k
always uses seed + k, so results do not depend on the batch size or on which rows were skipped.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from egoframe.data.records import load_records
from egoframe.enrichment import DESCRIPTIONS_FILE, attach_descriptions
from egoframe.errors import ConfigError, ImageTooLargeError, InputError
from egoframe.pipelines.default import load_default_pipeline
from egoframe.pipelines.loading import load_pipeline
from egoframe.utils.devices import check_device
from egoframe.utils.images import IMAGE_EXTENSIONS, check_output_paths, load_image, save_image
from egoframe.vllm.cache import VllmEmbeddingCache

# torch.Generator.manual_seed takes [-2**63, 2**64 - 1]; row k uses seed + k.
SEED_RANGE = (-(2**63), 2**64 - 1)


@dataclass
class GenerateRow:
    image: Path
    action: str
    out: Path
    description: str | None = None
    index: int = 0
    item_id: str | None = None  # the pair's id in a data set and its VLLM embedding cache (rows_from_data)
    target: Path | None = None  # the ground-truth frame (rows_from_data; a batch file's `target`), for set and grid


@dataclass
class GenerateSettings:
    model: str | None = None
    # None: the model's recommended value (sampling.json), else the paper's (100 steps, text 7.5 / image 1.5).
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
    # A VLLM embedding cache (`egoframe vllm embed` / `vllm import-features`): rows take their H_i, H_t from it
    # by item_id instead of running a VLLM, e.g. LEGO's released features with a converted checkpoint.
    embeddings: str | None = None

    def validate(self, last_row_index: int = 0) -> None:
        """Refuse what would fail only after the model is loaded, or silently: a NaN guidance scale samples
        an all-black frame, a seed past 64 bits overflows in torch, ``cuda`` on a CPU-only torch asserts."""
        _check_finite({"image_guidance_scale": self.image_guidance_scale, "guidance_scale": self.guidance_scale,
                       "strength": self.strength, "prox_quantile": self.prox_quantile,
                       "guidance_interval": self.guidance_interval})
        low, high = SEED_RANGE
        if not low <= self.seed <= self.seed + last_row_index <= high:
            raise ConfigError(f"seed {self.seed} is out of range: row k uses seed + k, and seeds must lie in "
                              f"[-2**63, 2**64 - 1] = [{low}, {high}]")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        check_device(self.device)


def _check_finite(values: dict) -> None:
    for name, value in values.items():
        numbers = value if isinstance(value, (tuple, list)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"{name} must be finite, got {value}")


@dataclass
class GenerateReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # outputs that existed and were kept
    too_large: list[Path] = field(default_factory=list)  # inputs over Pillow's decompression-bomb limit, skipped
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
    """Rows from a CSV (header: image, action[, description, out, target]) or a JSONL of such objects.

    Relative image/out/target paths are resolved against the batch file's folder; ``target`` (the true frame,
    when known) is only shown beside the output by ``egoframe generate --grid``.
    """
    if not path.exists():
        raise InputError(f"batch file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                try:
                    records = list(reader)
                except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB)
                    # line_num counts the lines of the rows read whole; the bad row starts on the next one
                    raise InputError(f"{path}:{reader.line_num + 1}: cannot read the CSV row: {exc}") from None
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
        target = rec.get("target") if isinstance(rec.get("target"), str) and rec.get("target").strip() else None
        target_path = (Path(target) if os.path.isabs(target) else base / target) if target else None
        rows.append(GenerateRow(image=image_path, action=act, description=desc, out=out_path, index=i,
                                target=target_path))
    return rows


def generate_rows(rows: list[GenerateRow], settings: GenerateSettings, pipe=None) -> GenerateReport:
    """Generate every row's frame; rows whose output exists are skipped unless ``overwrite``.

    Inputs over Pillow's decompression-bomb limit are skipped and listed in ``report.too_large``; when
    nothing else is left the run fails with their error instead. Every other bad setting, output path or
    input fails before the model is loaded, and an output is either written whole or not at all.
    """
    import torch

    settings.validate(max((row.index for row in rows), default=0))
    report = GenerateReport()
    todo = []
    for row in rows:
        if row.out.exists() and not settings.overwrite:
            report.skipped.append(row.out)
        else:
            todo.append(row)
    if not todo:
        return report
    # Check every output and read every input before loading the model, so a bad path fails fast with its name.
    check_output_paths(row.out for row in todo)
    cache = _open_embeddings(settings.embeddings, todo)
    todo, images = _read_inputs(todo, report)
    from egoframe.pipelines.baselines import as_method, method_kwargs  # lazy: pulls diffusers

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
    uses_vllm = bool(getattr(getattr(pipe, "conditioning", None), "needs_vllm", False))
    if cache is not None and not uses_vllm:
        report.notes.append(f"the model does not condition on VLLM embeddings: {settings.embeddings} is not used")
    for start in range(0, len(todo), settings.batch_size):
        chunk = todo[start : start + settings.batch_size]
        generators = [torch.Generator(settings.device).manual_seed(settings.seed + row.index) for row in chunk]
        extra = {}
        if cache is not None and uses_vllm:
            got = cache.get_many([row.item_id for row in chunk])
            extra = dict(vllm_image_tokens=got.image_tokens, vllm_text_tokens=got.text_tokens,
                         vllm_text_mask=got.text_mask)
        result = pipe(
            images[start : start + len(chunk)],
            [row.action for row in chunk],
            description=[row.description for row in chunk],
            num_inference_steps=chosen["num_inference_steps"],
            generator=generators,
            **sampling,
            **extra,
        )
        report.notes.extend(result.notes)
        for row, img in zip(chunk, result.images):
            save_image(img, row.out)  # atomic: a killed run never leaves a half-written output
            report.written.append(row.out)
    return report


def _open_embeddings(cache_dir: str | None, rows: list[GenerateRow]):
    """The VLLM embedding cache the rows read, checked to hold every row before any model loads."""
    if cache_dir is None:
        return None

    if not os.path.isdir(cache_dir):
        raise InputError(f"--embeddings {cache_dir}: no such folder (make one with `egoframe vllm embed` or "
                         f"`egoframe vllm import-features`)")
    without_id = [row for row in rows if row.item_id is None]
    if without_id:
        raise InputError("--embeddings needs rows from a data set (--data): the cache is keyed by the pair's id")
    cache = VllmEmbeddingCache(cache_dir)
    missing = [row.item_id for row in rows if row.item_id not in cache]
    if missing:
        raise InputError(f"{len(missing)} of {len(rows)} pairs have no embeddings in {cache_dir} (first: "
                         f"{missing[0]!r}); embed or import them first")
    return cache


def rows_from_data(data: Path, out: Path, split: str = "test", limit: int | None = None,
                   method: str = "lego") -> list[GenerateRow]:
    """One row per pair of a curated data set's ``split`` ("all": every pair), sorted by id, the first ``limit``
    of them; outputs go to ``out/<method>/<id>.png``, and each row keeps its target for the generation set."""
    if split not in ("train", "test", "all"):
        raise InputError(f"--split must be train, test or all, got {split!r}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    records = [r for r in load_records(str(data)) if split == "all" or r.split == split]
    if not records:
        raise InputError(f"{data} has no {split}-split pairs")
    if (data / DESCRIPTIONS_FILE).is_file():  # `egoframe enrich`'s; else the records' own (e.g. the LEGO release's)
        attach_descriptions(records, str(data))
    records.sort(key=lambda r: r.id)
    if limit is not None:
        records = records[:limit]
    used: set[str] = set()
    rows = []
    for index, rec in enumerate(records):
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", rec.id)
        while name in used:  # ids that differ only in replaced characters still get their own file
            name += "_"
        used.add(name)
        rows.append(GenerateRow(image=data / rec.input_path, action=rec.action, description=rec.description or None,
                                out=out / method / f"{name}.png", index=index, item_id=rec.id,
                                target=data / rec.target_path if rec.target_path else None))
    return rows


def _read_inputs(todo: list[GenerateRow], report: GenerateReport) -> tuple[list[GenerateRow], list]:
    """The rows whose input can be read, and their images; too-large inputs are skipped with a note."""
    kept, images, too_large = [], [], []
    for row in todo:
        try:
            images.append(load_image(row.image, notes=report.notes))
        except ImageTooLargeError as exc:
            too_large.append(exc)
            report.too_large.append(row.image)
            report.notes.append(f"skipped: {exc}")
            continue
        kept.append(row)
    if not kept:
        if len(too_large) == 1:
            raise too_large[0]
        raise ImageTooLargeError(f"all {len(too_large)} input images are too large to read safely; the first: "
                                 f"{too_large[0]}")
    return kept, images


def resolve_sampling(pipe, settings: GenerateSettings, notes: list[str]) -> dict:
    """Explicit settings win; then the model's recommendation; then LEGO's published values."""
    from egoframe.pipelines.lego import choose_sampling  # lazy: pulls diffusers

    given = {"num_inference_steps": settings.steps, "image_guidance_scale": settings.image_guidance_scale,
             "guidance_scale": settings.guidance_scale, "guidance_interval": settings.guidance_interval}
    recommended = getattr(pipe, "sampling_defaults", {}) or {}
    chosen = choose_sampling(recommended, given)
    _check_finite(chosen)  # also what the model's sampling.json recommends
    from_model = [k for k, v in given.items() if v is None and k in recommended]
    if from_model:
        notes.append("sampling recommended by the model: " + ", ".join(f"{k}={chosen[k]}" for k in from_model))
    return chosen


def load_model(model: str | None, notes: list[str]):
    return load_pipeline(model) if model else load_default_pipeline(notes)
