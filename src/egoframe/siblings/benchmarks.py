"""Benchmark runners for the sibling systems: Reason-Edit (SmartEdit), MagicBrush and ReasonPix2Pix.

A benchmark is a **manifest** (CSV, JSON or JSONL; one row per sample, paths relative to the manifest's
folder) plus a folder of **generated** images named by sample id (``<generated>/<id>.png``; ReasonPix2Pix:
``<generated>/direct/<id>.png`` and ``<generated>/reasoning/<id>.png``). :func:`run_benchmark` scores them
and writes ``report.json``, ``report.md`` and ``scores.csv``; every number comes with its n and a 95 %
percentile-bootstrap interval (:mod:`egoframe.evaluation.stats`). docs/siblings.md, "Benchmarks", is the
user's description; the definitions below are the exact ones.

Protocols
- ``reason-edit`` (SmartEdit, papers/002 Sec. 4.1 and Table 1): input, instruction, mask of the region to
  edit, optional target phrase. Background (outside the binarised mask) PSNR / SSIM / LPIPS of the generated
  image against the input; CLIP score of the mask's crop with the target phrase; CLIP-T of the image with
  the instruction as an automatic stand-in for the paper's human Ins-align (not the same thing).
- ``magicbrush`` (SmartEdit supplement Table 2, on the MagicBrush test set of Zhang et al. 2023): L1,
  CLIP-I, DINO-I against the ground-truth target, CLIP-T against the target caption (L2 on request).
- ``rp2p`` (ReasonPix2Pix, papers/003 Sec. 4.1 and Table 3): the same pairs edited once with the direct and
  once with the reasoning instruction; L1, L2, CLIP-I, DINO, CLIP-T for both columns and the paired
  difference reasoning - direct.

Sizes: pixel metrics and LPIPS compare at the generated image's size (or ``BenchConfig.size`` x ``size``,
SmartEdit's public evaluation used 256): the reference is resized with PIL bicubic on float data, the mask
with nearest neighbour. Model metrics (CLIP, DINO) take the original images and apply their own
preprocessing, as ``egoframe eval`` does.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
from PIL import Image

from egoframe.errors import InputError
from egoframe.evaluation import pixel, stats
from egoframe.evaluation.images import ImageLike, match_size, to_float01
from egoframe.evaluation.runner import MetricWeights
from egoframe.utils.images import IMAGE_EXTENSIONS, load_image

MASK_THRESHOLD = 0.5  # a mask pixel is "edited region" when its grey value / 255 >= 0.5

# metric -> (higher is better, exact definition written into every report)
METRIC_INFO: dict[str, tuple[bool, str]] = {
    "bg-psnr": (True, "10 log10(1 / MSE) in dB, MSE over the background pixels only (outside the binarised "
                      "mask, all 3 channels), generated vs input, images in [0, 1]; inf when the background is "
                      "unchanged"),
    "bg-ssim": (True, "SSIM map (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, as egoframe's ssim) of the "
                      "generated image with its masked region replaced by the input's pixels vs the input, "
                      "averaged over the background pixels whose window lies inside the image"),
    "bg-lpips": (False, "LPIPS v0.1 spatial map (each layer's distance map bilinearly upsampled to the image "
                        "and summed, the release's spatial mode) of the generated image with its masked region "
                        "replaced by the input's pixels vs the input, averaged over the background pixels"),
    "fg-clip": (True, "CLIP cosine of the generated image's crop around the mask (bounding box grown to a "
                      "square inside the image) with the target phrase; samples without a phrase are skipped; "
                      "SmartEdit prints 100 x cosine"),
    "ins-clip": (True, "CLIP cosine of the whole generated image with the instruction (CLIP-T); an automatic "
                       "proxy, not SmartEdit's human Ins-align rate"),
    "l1": (False, "mean absolute difference to the ground-truth target over all pixels and channels, [0, 1]"),
    "l2": (False, "mean squared difference to the ground-truth target over all pixels and channels, [0, 1]"),
    "clip-i": (True, "cosine of the projected CLIP image embeddings of generated and ground-truth target"),
    "clip-t": (True, "cosine of the generated image's CLIP embedding and the target caption's text embedding"),
    "dino": (True, "cosine of the DINO CLS features of generated and ground-truth target (DINO-I)"),
}


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    required: tuple[str, ...]  # manifest columns
    optional: tuple[str, ...]
    default_metrics: tuple[str, ...]
    allowed_metrics: tuple[str, ...]
    columns: tuple[str, ...]  # generated variants; "generated" = the folder itself

    @property
    def subfolders(self) -> bool:
        return self.columns != ("generated",)


GROUP_COLUMNS = ("scenario", "category")

PROTOCOLS: dict[str, Protocol] = {
    # SmartEdit (Huang et al., CVPR 2024), papers/002 Sec. 4.1 / Table 1.
    "reason-edit": Protocol(
        "reason-edit", "Reason-Edit (SmartEdit, papers/002)",
        ("id", "input", "mask", "instruction"), ("target_phrase", *GROUP_COLUMNS),
        ("bg-psnr", "bg-ssim", "bg-lpips", "fg-clip", "ins-clip"),
        ("bg-psnr", "bg-ssim", "bg-lpips", "fg-clip", "ins-clip"), ("generated",)),
    # MagicBrush test set as scored in SmartEdit's supplement, papers/002 Sec. 6 / Table 2.
    "magicbrush": Protocol(
        "magicbrush", "MagicBrush (metrics of papers/002 Table 2)",
        ("id", "input", "target", "instruction", "target_caption"), GROUP_COLUMNS,
        ("l1", "clip-i", "clip-t", "dino"), ("l1", "l2", "clip-i", "clip-t", "dino"), ("generated",)),
    # ReasonPix2Pix (Jin et al. 2024), papers/003 Sec. 4.1 / Table 3.
    "rp2p": Protocol(
        "rp2p", "ReasonPix2Pix benchmark (papers/003 Table 3)",
        ("id", "input", "target", "direct_instruction", "reasoning_instruction", "target_caption"),
        ("input_caption", *GROUP_COLUMNS),
        ("l1", "l2", "clip-i", "dino", "clip-t"), ("l1", "l2", "clip-i", "dino", "clip-t"), ("direct", "reasoning")),
}
_PATH_COLUMNS = ("input", "mask", "target")


@dataclass
class BenchSample:
    sample_id: str
    input: Path
    fields: dict[str, str]  # every text column of the row (empty optional cells left out)
    mask: Path | None = None
    target: Path | None = None
    generated: dict[str, Path] = field(default_factory=dict)  # column -> image

    def text(self, name: str) -> str | None:
        return self.fields.get(name) or None


@dataclass
class BenchConfig:
    protocol: str
    metrics: list[str] | None = None  # None: the protocol's defaults (every metric of the paper)
    weights: MetricWeights = field(default_factory=MetricWeights)
    lpips_net: str = "squeeze"  # SmartEdit's public script and egoframe's `lpips` (the paper names none)
    size: int | None = None  # score pixel metrics at size x size (SmartEdit's public script: 256)
    long_text: str = "truncate"  # CLIP text over 77 tokens: truncate (keeping EOT) | chunks
    resamples: int = stats.DEFAULT_RESAMPLES
    confidence: float = stats.DEFAULT_CONFIDENCE
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 16

    @property
    def spec(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    def resolved_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics else list(self.spec.default_metrics)

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InputError(f"unknown benchmark protocol {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        metrics = self.resolved_metrics()
        unknown = [m for m in metrics if m not in self.spec.allowed_metrics]
        if unknown:
            raise InputError(f"metric(s) {', '.join(unknown)} are not part of the {self.protocol} protocol; "
                             f"choose from {', '.join(self.spec.allowed_metrics)}")
        if len(set(metrics)) != len(metrics):
            raise InputError(f"metrics listed twice: {', '.join(metrics)}")
        if self.size is not None and self.size < 11:
            raise InputError(f"size must be >= 11 pixels (the SSIM window), got {self.size}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        from egoframe.evaluation.clip_dino import LONG_TEXT_MODES
        from egoframe.evaluation.lpips import ALIASES, NETS

        if self.long_text not in LONG_TEXT_MODES:
            raise InputError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {self.long_text!r}")
        if ALIASES.get(self.lpips_net, self.lpips_net) not in NETS:
            raise InputError(f"unknown LPIPS backbone {self.lpips_net!r}: use alex, squeeze or vgg")


@dataclass
class BenchReport:
    out_dir: Path | None
    protocol: str
    samples: list[BenchSample]
    scores: dict[str, dict[str, np.ndarray]]  # column -> metric -> (n,), NaN where a metric does not apply
    summary: dict
    notes: list[str]


# --------------------------------------------------------------------------------------------------------
# Manifest


def read_manifest(path: str | os.PathLike, protocol: str) -> list[BenchSample]:
    """Rows of a CSV / JSON (a list of objects, or {"samples": [...]}) / JSONL manifest as samples.

    Paths are relative to the manifest's folder (or absolute). Missing columns, empty required cells,
    duplicate or unsafe ids and missing files raise :class:`InputError` naming the row.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown benchmark protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    rows = _read_rows(path)
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    present = set().union(*(row.keys() for row in rows))
    missing = [c for c in spec.required if c not in present]
    if missing:
        raise InputError(f"manifest {path} lacks column(s) {', '.join(missing)} "
                         f"(the {protocol} protocol needs {', '.join(spec.required)})")
    root = path.parent
    samples, seen = [], set()
    for number, row in enumerate(rows, start=1):
        where = f"manifest {path.name} row {number}"
        empty = [c for c in spec.required if not row.get(c)]
        if empty:
            raise InputError(f"{where}: empty {', '.join(empty)}")
        sample_id = row["id"]
        _check_id(sample_id, where)
        if sample_id in seen:
            raise InputError(f"{where}: duplicate id {sample_id!r}")
        seen.add(sample_id)
        files = {}
        for column in _PATH_COLUMNS:
            if column in spec.required:
                file = Path(row[column]) if Path(row[column]).is_absolute() else root / row[column]
                if not file.is_file():
                    raise InputError(f"{where} (id {sample_id}): {column} file not found: {file}")
                files[column] = file
        known = set(spec.required) | set(spec.optional)
        text = {k: v for k, v in row.items() if k in known and k not in _PATH_COLUMNS and v}
        samples.append(BenchSample(sample_id, files["input"], text, files.get("mask"), files.get("target")))
    return samples


def _read_rows(path: Path) -> list[dict[str, str]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames:
                    raise InputError(f"manifest {path} is empty (no header row)")
                raw = list(reader)
                for number, row in enumerate(raw, start=1):
                    if None in row:
                        raise InputError(f"manifest {path.name} row {number}: more cells than header columns")
        elif suffix == ".jsonl":
            raw = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        raw.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InputError(f"manifest {path.name} line {number}: invalid JSON ({exc.msg})") from None
        elif suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InputError(f"manifest {path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
            raw = data.get("samples") if isinstance(data, dict) else data
            if not isinstance(raw, list):
                raise InputError(f"manifest {path}: expected a list of samples or {{\"samples\": [...]}}")
        else:
            raise InputError(f"manifest {path}: use a .csv, .json or .jsonl file")
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text") from None
    rows = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise InputError(f"manifest {path.name} row {number}: expected an object with named fields")
        rows.append({str(k).strip(): ("" if v is None else str(v).strip()) for k, v in item.items()})
    return rows


def _check_id(sample_id: str, where: str) -> None:
    parts = PurePosixPath(sample_id).parts
    if "\\" in sample_id or sample_id.startswith("/") or ".." in parts or not parts:
        raise InputError(f"{where}: id {sample_id!r} must be a relative name without '..' (it names the "
                         "generated image)")


def write_manifest(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write manifest rows (dicts) as CSV with the union of their keys as header, ``id`` first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(["id", *(k for row in rows for k in row)]))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def reason_edit_manifest_from_release(root: str | os.PathLike,
                                      relative_to: str | os.PathLike | None = None) -> list[dict]:
    """Manifest rows for the Reason-Edit release layout (REFERENCE.md, SmartEdit).

    One folder per category (``1-Left-Right`` ... ``5-Multiple-Objects``, ``6-Reasoning``) holding ``X.png``
    inputs, ``X_mask.jpg`` masks and one ``.txt`` file whose non-blank lines, in the sorted order of the
    inputs, read ``<instruction> CLIP: <target phrase>``. Masks are paired by name (``X`` with ``X_mask``),
    not by sort order. Ids are ``<category>/<X>``; paths are relative to ``relative_to`` (the folder the
    manifest will be written to; default ``root``).
    Folders whose name contains "reason" get ``scenario`` = reasoning, the others understanding (SmartEdit
    Table 1's two column groups).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Reason-Edit folder not found: {root}")
    base = Path(relative_to) if relative_to is not None else root

    def rel(file: Path) -> str:
        return Path(os.path.relpath(file.resolve(), base.resolve())).as_posix()

    rows = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*_mask.*")))
    if not folders:
        raise InputError(f"{root} has no category folders with *_mask images (the Reason-Edit release layout)")
    for folder in folders:
        inputs = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() == ".png" and not p.stem.endswith("_mask"))
        texts = sorted(folder.glob("*.txt"))
        if len(texts) != 1:
            raise InputError(f"{folder} must hold exactly one instruction .txt file, found {len(texts)}")
        lines = [line.strip() for line in texts[0].read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) != len(inputs):
            raise InputError(f"{texts[0]} has {len(lines)} instruction lines for {len(inputs)} input images")
        scenario = "reasoning" if "reason" in folder.name.lower() else "understanding"
        for image, line in zip(inputs, lines):
            masks = [p for p in folder.glob(f"{image.stem}_mask.*") if p.suffix.lower() in IMAGE_EXTENSIONS]
            if len(masks) != 1:
                raise InputError(f"{image}: expected one mask {image.stem}_mask.jpg beside it, found {len(masks)}")
            instruction, _, phrase = line.partition("CLIP:")
            rows.append({"id": f"{folder.name}/{image.stem}", "input": rel(image),
                         "mask": rel(masks[0]), "instruction": instruction.strip(),
                         "target_phrase": phrase.strip(), "category": folder.name, "scenario": scenario})
    return rows


def find_generated(samples: Sequence[BenchSample], generated_dir: str | os.PathLike, protocol: str) -> None:
    """Fill ``sample.generated`` from ``<dir>/<id>.<ext>`` (rp2p: ``<dir>/<direct|reasoning>/<id>.<ext>``)."""
    spec = PROTOCOLS[protocol]
    base = Path(generated_dir)
    if not base.is_dir():
        raise InputError(f"generated-images folder not found: {base}")
    missing, ambiguous = [], []
    for column in spec.columns:
        folder = base / column if spec.subfolders else base
        for sample in samples:
            found = _image_files(folder, sample.sample_id)
            label = f"{column}/{sample.sample_id}" if spec.subfolders else sample.sample_id
            if not found:
                missing.append(label)
            elif len(found) > 1:
                ambiguous.append(f"{label} ({', '.join(p.name for p in found)})")
            else:
                sample.generated[column] = found[0]
    if missing:
        layout = "<dir>/direct/<id>.png and <dir>/reasoning/<id>.png" if spec.subfolders else "<dir>/<id>.png"
        raise InputError(f"{len(missing)} generated image(s) missing in {base} (e.g. {', '.join(missing[:3])}); "
                         f"expected {layout}")
    if ambiguous:
        raise InputError(f"several generated images for one id in {base}: {'; '.join(ambiguous[:3])}")


def _image_files(folder: Path, sample_id: str) -> list[Path]:
    exact = folder / sample_id
    if exact.suffix.lower() in IMAGE_EXTENSIONS and exact.is_file():
        return [exact]
    found = []
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{sample_id}{ext}", folder / f"{sample_id}{ext.upper()}"):
            if candidate.is_file() and candidate not in found:
                found.append(candidate)
    return found


# --------------------------------------------------------------------------------------------------------
# Masked metrics (Reason-Edit)


def load_mask(path: str | os.PathLike, input_size: tuple[int, int] | None = None, where: str = "") -> Image.Image:
    """A mask file as an 8-bit grey PIL image; its size (W, H) must equal ``input_size`` when given."""
    mask = load_image(path).convert("L")
    if input_size is not None and mask.size != tuple(input_size):
        raise InputError(f"{where}mask {path} is {mask.size[0]}x{mask.size[1]} but its input image is "
                         f"{input_size[0]}x{input_size[1]}; a mask must have its input's size")
    return mask


def binarize_mask(mask: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool "edited region" at ``size`` = (H, W): grey / 255 >= 0.5, resized with nearest neighbour.

    SmartEdit's public script multiplied images by the raw mask / 255 (JPEG ringing makes it non-binary);
    REFERENCE.md asks for a binarised mask. Nearest-neighbour resizing commutes with thresholding.
    """
    if isinstance(mask, np.ndarray):
        array = mask if mask.ndim == 2 else mask[..., 0]
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        elif np.issubdtype(array.dtype, np.floating):
            array = np.round(np.clip(array, 0.0, 1.0) * 255.0)
        mask = Image.fromarray(array.astype(np.uint8), mode="L")
    if mask.mode != "L":
        mask = mask.convert("L")
    binary = Image.fromarray(((np.asarray(mask, dtype=np.float64) / 255.0 >= MASK_THRESHOLD) * 255).astype(np.uint8))
    if binary.size != (size[1], size[0]):
        binary = binary.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(binary) > 0


def fill_foreground(generated: np.ndarray, reference: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """The generated image with the edited region replaced by the reference's pixels (float [0, 1])."""
    return np.where(foreground[..., None], reference, generated)


def _masked_pair(generated: ImageLike, reference: ImageLike, foreground: np.ndarray):
    foreground = np.asarray(foreground, dtype=bool)
    gen = to_float01(generated, "generated")
    ref = to_float01(reference, "reference")
    if gen.shape != ref.shape:
        raise InputError(f"image sizes differ: generated {gen.shape[:2]} vs reference {ref.shape[:2]}")
    if foreground.shape != gen.shape[:2]:
        raise InputError(f"mask size {foreground.shape} differs from the image size {gen.shape[:2]}")
    if foreground.all():
        raise InputError("the mask covers the whole image: there is no background to compare")
    return gen, ref, foreground


def background_psnr(generated: ImageLike, reference: ImageLike, foreground: np.ndarray) -> float:
    """PSNR (peak 1.0) over the pixels outside ``foreground`` only; ``inf`` when they are identical."""
    gen, ref, foreground = _masked_pair(generated, reference, foreground)
    background = ~foreground
    return pixel.psnr_from_mse(float(np.mean((gen[background] - ref[background]) ** 2)))


def background_ssim(generated: ImageLike, reference: ImageLike, foreground: np.ndarray) -> float:
    """Mean SSIM over background pixels (inside the valid window region) of fill_foreground(gen) vs reference.

    Filling the edited region with the reference's pixels keeps the edit itself out of the windows that
    straddle the mask's border, so changing only masked pixels gives 1.
    """
    gen, ref, foreground = _masked_pair(generated, reference, foreground)
    values, valid = pixel.ssim_map(fill_foreground(gen, ref, foreground), ref)
    region = valid & ~foreground
    if not region.any():
        raise InputError("the background lies entirely within SSIM's 5-pixel image border")
    return float(values[region].mean())


def background_lpips(lpips, generated: ImageLike, reference: ImageLike, foreground: np.ndarray) -> float:
    """Mean of LPIPS' spatial map over background pixels, fill_foreground(gen) vs reference.

    ``lpips`` is an :class:`egoframe.evaluation.lpips.Lpips`. The map is Zhang et al.'s (CVPR 2018) spatial
    variant: each tapped layer's weighted squared difference of unit-normalised features, upsampled
    bilinearly (align_corners False) to the image size, summed over layers. Inputs go to [-1, 1] exactly as
    in :meth:`Lpips.__call__`.
    """
    from egoframe.evaluation.lpips import spatial_lpips

    gen, ref, foreground = _masked_pair(generated, reference, foreground)
    return float(spatial_lpips(lpips, fill_foreground(gen, ref, foreground), ref)[~foreground].mean())


def foreground_crop(image: ImageLike, foreground: np.ndarray) -> np.ndarray:
    """The image cut to the mask's bounding box grown to a square around its centre (kept inside the image).

    A square crop keeps the whole region inside CLIP's centre crop. SmartEdit's public script cut the raw
    box, with its right/bottom row dropped and a non-binarised mask; both are avoided here.
    """
    array = to_float01(image, "generated")
    foreground = np.asarray(foreground, dtype=bool)
    if foreground.shape != array.shape[:2]:
        raise InputError(f"mask size {foreground.shape} differs from the image size {array.shape[:2]}")
    if not foreground.any():
        raise InputError("the mask is empty: there is no edited region to crop")
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = array.shape[:2]
    side = max(bottom - top, right - left)
    side_y, side_x = min(side, height), min(side, width)
    top = int(np.clip(top + (bottom - top - side_y) // 2, 0, height - side_y))
    left = int(np.clip(left + (right - left - side_x) // 2, 0, width - side_x))
    return array[top:top + side_y, left:left + side_x]


# --------------------------------------------------------------------------------------------------------
# Runner


def _scoring_size(config: BenchConfig, generated_size: tuple[int, int]) -> tuple[int, int]:
    return (config.size, config.size) if config.size else generated_size  # (H, W)


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, with the same error as load_image for unreadable files."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, SyntaxError, ValueError):
        pass
    image = load_image(path)  # raises the one-line InputError
    return image.height, image.width


def _check_masks(samples: Sequence[BenchSample], config: BenchConfig, metrics: Sequence[str]) -> None:
    """Every mask before any model loads: input-sized, and at the scoring size non-empty with a background."""
    radius = int(pixel._SSIM_TRUNCATE * pixel.SSIM_SIGMA + 0.5)
    for sample in samples:
        where = f"sample {sample.sample_id}: "
        in_h, in_w = _image_size(sample.input)
        mask = load_mask(sample.mask, (in_w, in_h), where)
        size = _scoring_size(config, _image_size(sample.generated["generated"]))
        foreground = binarize_mask(mask, size)
        if not foreground.any():
            raise InputError(f"{where}mask {sample.mask} is empty after binarising at {MASK_THRESHOLD} "
                             f"({size[1]}x{size[0]})")
        if foreground.all():
            raise InputError(f"{where}mask {sample.mask} covers the whole image: no background to compare")
        if "bg-ssim" in metrics:
            if min(size) < 2 * radius + 1:
                raise InputError(f"{where}bg-ssim needs images of at least {2 * radius + 1} pixels a side")
            if foreground[radius:size[0] - radius, radius:size[1] - radius].all():
                raise InputError(f"{where}the background lies entirely within SSIM's {radius}-pixel border")


def _load_scorers(config: BenchConfig, metrics: Sequence[str]) -> dict:
    """Every model a metric needs, before scoring (MissingWeightsError names the flag and the files)."""
    scorers, wanted = {}, set(metrics)
    clip_metrics = sorted(wanted & {"fg-clip", "ins-clip", "clip-i", "clip-t"})
    if clip_metrics:
        from egoframe.evaluation.clip_dino import ClipScorer

        needs_text = bool(wanted & {"fg-clip", "ins-clip", "clip-t"})
        scorers["clip"] = ClipScorer(config.weights.clip, device=config.device, long_text=config.long_text,
                                     what="/".join(clip_metrics), needs_text=needs_text)
    if "dino" in wanted:
        from egoframe.evaluation.clip_dino import DinoScorer

        scorers["dino"] = DinoScorer(config.weights.dino, device=config.device)
    if "bg-lpips" in wanted:
        from egoframe.evaluation.lpips import Lpips

        scorers["lpips"] = Lpips.from_dir(config.weights.lpips, config.lpips_net, device=config.device)
    return scorers


def run_benchmark(manifest: str | os.PathLike, generated_dir: str | os.PathLike,
                  out_dir: str | os.PathLike | None = None, config: BenchConfig | None = None,
                  protocol: str | None = None) -> BenchReport:
    """Score the generated images of one system on a benchmark manifest; write the report to ``out_dir``.

    Everything a user can get wrong (manifest, files, mask sizes, weights) is checked before scoring.
    """
    if config is None:
        config = BenchConfig(protocol=protocol or "")
    config.check()
    spec, metrics = config.spec, config.resolved_metrics()
    samples = read_manifest(manifest, spec.name)
    find_generated(samples, generated_dir, spec.name)
    if spec.name == "reason-edit":
        _check_masks(samples, config, metrics)
    notes: list[str] = []
    if "fg-clip" in metrics and not any(s.text("target_phrase") for s in samples):
        raise InputError("fg-clip needs a target_phrase for at least one sample; none has one "
                         "(drop fg-clip from the metrics or fill the column)")
    scorers = _load_scorers(config, metrics)

    n = len(samples)
    scores = {column: {m: np.full(n, np.nan) for m in metrics} for column in spec.columns}
    for start in range(0, n, config.batch_size):
        chunk = list(range(start, min(n, start + config.batch_size)))
        if spec.name == "reason-edit":
            _score_reason_edit(chunk, samples, metrics, scorers, config, scores["generated"], notes)
        else:
            _score_against_target(chunk, samples, spec.columns, metrics, scorers, config, scores, notes)
    if "fg-clip" in metrics:
        skipped = sum(1 for s in samples if not s.text("target_phrase"))
        if skipped:
            notes.append(f"fg-clip: {skipped} of {n} samples have no target_phrase and are not scored")
    summary = summarise(samples, scores, metrics, config, manifest, generated_dir, notes)
    report = BenchReport(Path(out_dir) if out_dir is not None else None, spec.name, samples, scores, summary, notes)
    if out_dir is not None:
        write_report(report)
    return report


def _resized(image: Image.Image, size: tuple[int, int], notes: list[str], name: str) -> np.ndarray:
    return match_size(to_float01(image, name), size, notes, name)


def _score_reason_edit(chunk, samples, metrics, scorers, config, out, notes) -> None:
    crops, phrases, crop_rows, images, instructions = [], [], [], [], []
    for i in chunk:
        sample = samples[i]
        generated = load_image(sample.generated["generated"])
        source = load_image(sample.input)
        size = _scoring_size(config, (generated.height, generated.width))
        gen = _resized(generated, size, notes, f"generated {sample.sample_id}")
        ref = _resized(source, size, notes, f"input {sample.sample_id}")
        foreground = binarize_mask(load_mask(sample.mask, source.size, f"sample {sample.sample_id}: "), size)
        if "bg-psnr" in metrics:
            out["bg-psnr"][i] = background_psnr(gen, ref, foreground)
        if "bg-ssim" in metrics:
            out["bg-ssim"][i] = background_ssim(gen, ref, foreground)
        if "bg-lpips" in metrics:
            out["bg-lpips"][i] = background_lpips(scorers["lpips"], gen, ref, foreground)
        if "fg-clip" in metrics and sample.text("target_phrase"):
            crops.append(foreground_crop(gen, foreground))
            phrases.append(sample.text("target_phrase"))
            crop_rows.append(i)
        if "ins-clip" in metrics:
            images.append(generated)
            instructions.append(sample.text("instruction"))
    if crops:
        out["fg-clip"][crop_rows] = scorers["clip"].image_text(crops, phrases)
    if images:
        out["ins-clip"][chunk] = scorers["clip"].image_text(images, instructions)


def _score_against_target(chunk, samples, columns, metrics, scorers, config, scores, notes) -> None:
    targets = [load_image(samples[i].target) for i in chunk]
    captions = [samples[i].text("target_caption") for i in chunk]
    for column in columns:
        out = scores[column]
        generated = [load_image(samples[i].generated[column]) for i in chunk]
        if {"l1", "l2"} & set(metrics):
            for i, gen_image, target in zip(chunk, generated, targets):
                size = _scoring_size(config, (gen_image.height, gen_image.width))
                gen = _resized(gen_image, size, notes, f"generated {samples[i].sample_id}")
                ref = _resized(target, size, notes, f"target {samples[i].sample_id}")
                for metric in ("l1", "l2"):
                    if metric in metrics:
                        out[metric][i] = getattr(pixel, metric)(gen, ref)
        if "clip-i" in metrics:
            out["clip-i"][chunk] = scorers["clip"].image_image(generated, targets)
        if "clip-t" in metrics:
            out["clip-t"][chunk] = scorers["clip"].image_text(generated, captions)
        if "dino" in metrics:
            out["dino"][chunk] = scorers["dino"].image_image(generated, targets)


# --------------------------------------------------------------------------------------------------------
# Summary and report


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
