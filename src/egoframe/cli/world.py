"""`egoframe world ...`: make the embedded egocentric world data set."""

from __future__ import annotations

from pathlib import Path

import typer

world_app = typer.Typer(help="The embedded egocentric world (the default data set).", no_args_is_help=True)


@world_app.command("make")
def make(
    out: Path = typer.Option(..., "--out", help="Output directory (created; a rerun resumes it)."),
    videos: int = typer.Option(50, "--videos", help="Number of videos."),
    seed: int = typer.Option(0, "--seed", help="World seed: same seed, same world."),
    resolution: int = typer.Option(128, "--resolution", help="Square frame size in pixels (even)."),
    fps: int = typer.Option(30, "--fps", help="Frames per second (10-36)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core, at most 2)."),
    motion_blur: bool = typer.Option(False, "--motion-blur/--no-motion-blur", help="Blend each frame with the last."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Render videos + EPIC-KITCHENS-100 CSV + Ego4D FHO JSON + per-frame states + ground-truth pairs."""
    import time

    from egoframe.world import make_world

    began = time.perf_counter()
    manifest = make_world(str(out), n_videos=videos, seed=seed, resolution=resolution, fps=fps,
                          workers=workers or None, progress=not quiet, motion_blur=motion_blur)
    seconds = time.perf_counter() - began
    train, test = manifest.split_videos("train"), manifest.split_videos("test")
    typer.echo(f"world: {len(manifest.videos)} videos ({len(train)} train / {len(test)} test), "
               f"{manifest.n_actions} actions, {manifest.stats['frames']} frames in {seconds:.1f} s -> {out}")


@world_app.command("pairs")
def pairs(
    out: Path = typer.Option(..., "--out", help="Output data set (curation's layout; a rerun resumes it)."),
    n_pairs: int = typer.Option(20000, "--pairs", min=1, help="Number of (input, action, target) pairs."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same pairs in the same order."),
    resolution: int = typer.Option(128, "--resolution", help="Square frame size in pixels (even)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core, at most 2)."),
    test_every: int = typer.Option(50, "--test-every", min=0,
                                   help="Every k-th episode is the test split (sample grids); 0: none."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Simulate training pairs directly (fresh scenes, curation's frame rule), without videos or curation."""
    import os
    import time

    from egoframe.utils.progress import ProgressBar
    from egoframe.world.pairs import write_pairs

    began = time.perf_counter()
    bar = ProgressBar(not quiet, "pairs", n_pairs)
    with bar:
        report = write_pairs(str(out), n_pairs, seed=seed, resolution=resolution,
                             workers=workers or min(2, os.cpu_count() or 1), test_every=test_every,
                             on_chunk=lambda done, total: bar.update(done))
    c = report["counts"]
    typer.echo(f"pairs: {c['pairs_kept']} ({c['pairs_kept_train']} train / {c['pairs_kept_test']} test) from "
               f"{c['episodes']} simulated episodes in {time.perf_counter() - began:.1f} s -> {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(world_app, name="world")
