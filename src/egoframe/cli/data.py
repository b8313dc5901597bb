"""`egoframe data ...`: curate LEGO pairs from Ego4D / EPIC-KITCHENS / edit data sets, re-filter, inspect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Curate and inspect (input frame, action, target frame) data sets.",
                       no_args_is_help=True)


@data_app.command("curate")
def curate_command(
    format: str = typer.Option(..., "--format", help="epic100 | ego4d | ip2p | magicbrush | reason-edit | lego (the released LEGO-Dataset JSON)"),
    annotations: Path = typer.Option(..., "--annotations", help="CSV / JSON / parquet / folder of the data set"),
    out: Path = typer.Option(..., "--out", help="output data set directory (a rerun resumes it)"),
    videos: Optional[Path] = typer.Option(None, "--videos", help="directory of <video_id>.MP4 files (lego: EgoGen/<ds>/<split>, the frames' folder)"),
    frames: Optional[Path] = typer.Option(None, "--frames", help="EPIC rgb_frames directory (P01/P01_01/frame_*.jpg)"),
    frames_fps: float = typer.Option(0.0, "--frames-fps", help="rate --frames are numbered at; 0: EPIC-KITCHENS-100's own rule (60 for PXX_YY, 50 for PXX_1YY videos)"),
    workers: int = typer.Option(1, "--workers", help="videos decoded in parallel (processes)"),
    scorer: str = typer.Option("offline", "--scorer", help="offline (sharpness/exposure) | laion"),
    laion_head: Optional[Path] = typer.Option(None, "--laion-head", help="LAION aesthetic head (.safetensors)"),
    clip: Optional[Path] = typer.Option(None, "--clip", help="local CLIP ViT-L/14 directory"),
    min_sim: float = typer.Option(0.81, "--min-sim", help="keep pairs with similarity >= this"),
    max_sim: float = typer.Option(0.97, "--max-sim", help="keep pairs with similarity <= this"),
    no_filter: bool = typer.Option(False, "--no-filter", help="keep all pairs (scores are still recorded; on a world also the "
                                   "pairs whose true states show no change)"),
    neighbours: int = typer.Option(3, "--neighbours", help="frames on each side for the aesthetic choice"),
    input_offset: float = typer.Option(0.25, "--input-offset", help="EPIC δi in seconds"),
    target_fraction: float = typer.Option(0.6, "--target-fraction", help="EPIC λ"),
    split_by: str = typer.Option("video", "--split-by", help="video | participant"),
    test_fraction: float = typer.Option(0.1, "--test-fraction"),
    max_side: int = typer.Option(512, "--max-side", help="longest side of stored images (0 keeps size)"),
    engine: str = typer.Option("local", "--engine", help="local | dask"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Curate a data set into OUT: pairs.parquet, image shards, config.json and report.json."""
    from egoframe.data.curate import CurationConfig, curate

    config = CurationConfig(
        format=format, annotations=str(annotations), out=str(out), videos=str(videos or ""),
        frames=str(frames or ""), frames_fps=frames_fps, workers=workers, scorer=scorer,
        laion_head=str(laion_head or ""), clip_dir=str(clip or ""), min_sim=min_sim, max_sim=max_sim,
        filter_similarity=False if no_filter else None, filter_unchanged=False if no_filter else None,
        neighbours=neighbours, input_offset_s=input_offset,
        target_fraction=target_fraction, split_by=split_by, test_fraction=test_fraction, max_side=max_side,
        progress=progress)
    if engine == "dask":
        from egoframe.data.cluster import curate_with_dask

        report = curate_with_dask(config)
    elif engine == "local":
        report = curate(config)
    else:
        from egoframe.errors import InputError

        raise InputError(f"unknown engine {engine!r}: use local or dask")
    _print_counts(report, out)


@data_app.command("filter")
def filter_command(
    root: Path = typer.Argument(..., help="a curated data set directory"),
    min_sim: Optional[float] = typer.Option(None, "--min-sim"),
    max_sim: Optional[float] = typer.Option(None, "--max-sim"),
    no_filter: bool = typer.Option(False, "--no-filter", help="keep every curated pair"),
) -> None:
    """Re-select pairs.parquet with new similarity thresholds from the stored scores (no decoding)."""
    from egoframe.data.curate import apply_thresholds

    counts = apply_thresholds(str(root), min_sim, max_sim, enabled=False if no_filter else None)
    typer.echo(json.dumps(counts))


@data_app.command("info")
def info_command(root: Path = typer.Argument(..., help="a curated data set directory")) -> None:
    """Print the counts and skip reasons of a curated data set."""
    from egoframe.errors import InputError

    report_path = root / "report.json"
    if not report_path.exists():
        raise InputError(f"no report.json in {root}: not a curated data set")
    report = json.loads(report_path.read_text())
    typer.echo(json.dumps({"counts": report["counts"], "skipped_by_reason": report["skipped_by_reason"],
                           "filter": report["filter"]}, indent=1))


def _print_counts(report: dict, out: Path) -> None:
    counts = report["counts"]
    typer.echo(f"{counts['pairs_kept']} pairs kept of {counts['pairs_curated']} curated "
               f"({counts['pairs_kept_train']} train / {counts['pairs_kept_test']} test); "
               f"{counts['skipped']} skipped (see {out / 'report.json'})")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
