"""`egoframe sibling ...`: train and run SmartEdit, MGIE and ReasonPix2Pix (egoframe.siblings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from egoframe.cli.train import parse_overrides
from egoframe.errors import InputError


def register(app: typer.Typer) -> None:
    sibling = typer.Typer(help="LEGO's sibling systems: SmartEdit, MGIE, ReasonPix2Pix.", no_args_is_help=True)
    sibling.command("train", help="Train one system from a YAML config (keys of SiblingTrainConfig).")(train)
    sibling.command("generate", help="Edit an image with a trained sibling model.")(generate)
    sibling.command("reasoning", help="Write reasoning instructions for the world's pairs (rule-based).")(reasoning)
    app.add_typer(sibling, name="sibling")


def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config (system, root, out_dir, ...)."),
    system: Optional[str] = typer.Option(None, "--system", help="smartedit | mgie | rp2p (overrides the config)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key=value (repeatable)."),
) -> None:
    from egoframe.siblings.train import load_train_config, train_sibling

    overrides = parse_overrides(set_)
    if system:
        overrides["system"] = system
    result = train_sibling(load_train_config(str(config), overrides), progress=False)
    typer.echo(f"trained {result.steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.4f} "
               f"-> {result.out_dir}")


def generate(
    model: Path = typer.Option(..., "--model", help="A trained sibling model directory (…/model)."),
    image: Path = typer.Option(..., "--image", help="Input frame."),
    instruction: str = typer.Option(..., "--instruction", help="The edit, e.g. 'take cup' or 'I am thirsty'."),
    out: Path = typer.Option(..., "--out", help="Output PNG."),
    steps: int = typer.Option(50, "--steps", min=1),
    image_scale: float = typer.Option(1.5, "--image-scale", help="s_x (papers: 7.5; tiny models want ~1.5)."),
    text_scale: float = typer.Option(1.5, "--text-scale", help="s_c."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    import torch
    from PIL import Image, UnidentifiedImageError

    from egoframe.siblings.pipeline import load_sibling_pipeline

    try:
        frame = Image.open(image).convert("RGB")
    except (OSError, UnidentifiedImageError):
        raise InputError(f"cannot read image {image}") from None
    pipe = load_sibling_pipeline(str(model))
    result = pipe(frame, instruction, num_inference_steps=steps, image_guidance_scale=image_scale,
                  guidance_scale=text_scale, generator=torch.Generator().manual_seed(seed), progress=False)
    result.images[0].save(out)
    for note in result.notes:
        typer.echo(note)
    typer.echo(f"{pipe.system}: wrote {out}")


def reasoning(
    data: Path = typer.Option(..., "--data", help="Curated pairs (pairs.parquet) of the embedded world."),
    out: Path = typer.Option(..., "--out", help="Output data set root (pairs.parquet with extra.instruction)."),
) -> None:
    from egoframe.siblings.reasoning import write_reasoning_variant

    n, skipped = write_reasoning_variant(str(data), str(out))
    typer.echo(f"{n} pairs with reasoning instructions ({skipped} without a rule) -> {out}")
