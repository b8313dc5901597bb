"""`egoframe train` (the LEGO diffusion model) and `egoframe vae train` (the embedded default's VAE)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from egoframe.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("train", help="Train the LEGO diffusion model (or an ablation / IP2P) from a YAML config.")(train)
    vae = typer.Typer(help="The small VAE of the embedded default.", no_args_is_help=True)
    vae.command("train", help="Train the VAE whose latents the tiny diffusion model works on.")(vae_train)
    vae.command("patch", help="Fit the lossless patch autoencoder (pixels folded into channels; 128 px -> "
                              "48 x 32 x 32): a mean colour and a scale, seconds.")(vae_patch)
    app.add_typer(vae, name="vae")


def parse_overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set takes key=value (e.g. optim.max_steps=500), got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML training config (see configs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in log.out_dir."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: section.key=value (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    from egoframe.training.config import load_config
    from egoframe.training.trainer import train as run

    cfg = load_config(str(config), parse_overrides(set_))
    result = run(cfg, resume=resume, progress=not quiet)
    typer.echo(
        f"trained {result.steps} steps (from step {result.resumed_from}) in {result.seconds:.0f} s, "
        f"final loss {result.final_loss:.4f} -> {result.model_dir}"
    )


def vae_train(
    data: Path = typer.Option(..., "--data", help="Curated data set (from `egoframe data curate`)."),
    out: Path = typer.Option(..., "--out", help="Output directory (diffusers AutoencoderKL layout)."),
    steps: int = typer.Option(600, "--steps", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    resolution: int = typer.Option(64, "--resolution", min=8),
    channels: str = typer.Option("32,64", "--channels",
                                 help="Widths of the levels; n levels downsample 2^(n-1)x (32,64,64: 128 px -> 32 x 32)."),
    latent_channels: int = typer.Option(4, "--latent-channels", min=1, help="Channels of the latent."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Train on random crops of this size (cheaper per frame)."),
    max_pairs: int = typer.Option(4000, "--max-pairs", min=1, help="Frames of at most this many pairs in memory."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    from egoframe.errors import InputError
    from egoframe.training.vae import VaeTrainConfig, train_vae

    try:
        widths = tuple(int(c) for c in channels.split(","))
    except ValueError:
        raise InputError(f"--channels must be comma-separated integers, got {channels!r}") from None
    summary = train_vae(VaeTrainConfig(data=str(data), out_dir=str(out), steps=steps, batch_size=batch_size,
                                       resolution=resolution, seed=seed, vae_channels=widths, max_pairs=max_pairs,
                                       latent_channels=latent_channels, crop=crop),
                        progress=not quiet)
    if summary.get("reused"):
        typer.echo(f"VAE already trained in {out}")
    else:
        typer.echo(f"VAE: reconstruction {summary['reconstruction_psnr_db']:.1f} dB after {summary['steps']} steps "
                   f"({summary['seconds']:.0f} s) -> {out}")


def vae_patch(
    data: Path = typer.Option(..., "--data", help="Data set (from `egoframe data curate` or `egoframe world pairs`)."),
    out: Path = typer.Option(..., "--out", help="Output directory (diffusers layout: config.json + safetensors)."),
    resolution: int = typer.Option(128, "--resolution", min=8, help="Frame size the diffusion model works at."),
    patch: int = typer.Option(4, "--patch", min=1, help="Pixels per latent position along each side."),
    max_pairs: int = typer.Option(2000, "--max-pairs", min=1, help="Frames of at most this many pairs to fit on."),
) -> None:
    from egoframe.training.vae import fit_patch_autoencoder

    summary = fit_patch_autoencoder(str(data), str(out), resolution=resolution, patch_size=patch, max_pairs=max_pairs)
    if summary.get("reused"):
        typer.echo(f"patch autoencoder already fitted in {out}")
    else:
        c, h, w = summary["latent_shape"]
        typer.echo(f"patch autoencoder: {resolution} px -> {c} x {h} x {w}, scale {summary['scaling_factor']:.3f}, "
                   f"round-trip error {summary['max_reconstruction_error']:.1e} -> {out}")
