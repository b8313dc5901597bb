"""`egoframe convert-lego`: the published LEGO LDM checkpoint -> an egoframe model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def convert_lego(
    ckpt: Path = typer.Argument(..., help="LEGO's Lightning .ckpt (read without running any code from it)."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (diffusers layout, safetensors)."),
    clip: Path = typer.Option(..., "--clip", help="Local CLIP ViT-L/14 directory (tokenizer + text config)."),
    config: Optional[Path] = typer.Option(None, "--config", help="The public code's configs/train_*.yaml "
                                          "(default: its published ego4d/epic size)."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw UNet weights, not the EMA ones."),
    num_image_tokens: int = typer.Option(256, "--num-image-tokens", min=1, help="H_i tokens the VLLM gives."),
    num_text_tokens: int = typer.Option(77, "--num-text-tokens", min=1, help="H_t tokens (77 in LEGO)."),
) -> None:
    """Convert the released LDM (and the scaleup ones) for `egoframe generate --model OUT`."""
    from egoframe.pipelines.convert_lego import convert_lego_checkpoint

    summary = convert_lego_checkpoint(ckpt, out, clip, original_config=str(config) if config else None,
                                      use_ema=not no_ema, num_image_tokens=num_image_tokens,
                                      num_text_tokens=num_text_tokens)
    typer.echo(f"{out}: UNet {summary['unet_parameters'] / 1e6:.1f} M parameters, EMA: "
               f"{'yes' if summary['ema'] else 'no'}, d_llm {summary['conditioning']['d_llm']}; "
               "sampling: 100 Euler-ancestral steps, text 7.5 / image 1.5 (the public code's)")


def register(app: typer.Typer) -> None:
    app.command("convert-lego", help="Convert LEGO's released LDM checkpoint to an egoframe model directory.")(
        convert_lego)
