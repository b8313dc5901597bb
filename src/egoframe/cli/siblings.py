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
    sibling.command("bench", help="Score generated images on Reason-Edit, MagicBrush or ReasonPix2Pix (n + 95% CI).")(
        bench)
    sibling.command("bench-manifest", help="Write a bench manifest from the Reason-Edit release folders.")(
        bench_manifest)
    sibling.command("compare", help="Train SmartEdit, MGIE and ReasonPix2Pix on the embedded world, generate, "
                                    "evaluate with the oracle and write REPORT.md (resumable).")(compare)
    register_synthesis(sibling)
    app.add_typer(sibling, name="sibling")


def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config (system, root, out_dir, ...)."),
    system: Optional[str] = typer.Option(None, "--system", help="smartedit | mgie | rp2p (overrides the config)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in out_dir from its latest checkpoint."),
) -> None:
    from egoframe.siblings.train import load_train_config, train_sibling

    overrides = parse_overrides(set_)
    if system:
        overrides["system"] = system
    result = train_sibling(load_train_config(str(config), overrides), progress=False, resume=resume)
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


def compare(
    data: Path = typer.Option(..., "--data", help="Curated (+ enriched) pairs of the embedded world, with a test split."),
    world: Path = typer.Option(..., "--world", help="The embedded world the data came from."),
    oracle: Optional[Path] = typer.Option(None, "--oracle", help="Oracle directory (default: the shipped oracle)."),
    out: Path = typer.Option(..., "--out", "-o", help="Work directory (data variant, runs, generation set); resumable."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="REPORT.md + PNGs (default OUT/report)."),
    systems: str = typer.Option("smartedit,mgie,rp2p", "--systems", help="Comma list of smartedit, mgie, rp2p."),
    lego: Optional[Path] = typer.Option(None, "--lego", help="A LEGO model directory to add (fed the action label)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps per run (default 40 small / 500)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Sibling resolution (default 32 / 64)."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Held-out pairs (default 12 / 96)."),
    sample_steps: Optional[int] = typer.Option(None, "--sample-steps", help="Denoising steps (default 10 / 25)."),
    small: bool = typer.Option(False, "--small", help="The CI size: 32 px, 40 steps, 12 test pairs."),
    reasoning: bool = typer.Option(True, "--reasoning/--direct",
                                   help="Train on reasoning instructions, evaluate both kinds (default); or labels only."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Default 8 small / 16."),
    lr: float = typer.Option(5e-4, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    set_: list[str] = typer.Option([], "--set", help="Another SiblingTrainConfig value for every run: key=value."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
) -> None:
    import shlex
    import sys

    from egoframe.workflows.siblings_compare import CompareConfig
    from egoframe.workflows.siblings_compare import compare as run

    config = CompareConfig(
        data=str(data), world=str(world), oracle=str(oracle) if oracle else None, out_dir=str(out),
        report_dir=str(report_dir) if report_dir else None, systems=systems.split(","),
        lego=str(lego) if lego else None, reasoning=reasoning, small=small, resolution=resolution, steps=steps,
        batch_size=batch_size, lr=lr, n_test=n_test, sample_steps=sample_steps, seed=seed,
        train_overrides=parse_overrides(set_), threads=threads)
    command = "egoframe " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "egoframe sibling compare"
    typer.echo(run(config, command=command))


def bench(
    protocol: str = typer.Option(..., "--protocol", help="reason-edit | magicbrush | rp2p."),
    manifest: Path = typer.Option(..., "--manifest", help="CSV/JSON/JSONL manifest (docs/siblings.md, Benchmarks)."),
    generated: Path = typer.Option(..., "--generated",
                                   help="Generated images: <dir>/<id>.png (rp2p: <dir>/direct/, <dir>/reasoning/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for report.md, report.json, scores.csv."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma list (default: all of the protocol's)."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Local CLIPModel directory."),
    dino: Optional[Path] = typer.Option(None, "--dino", help="Local DINO ViTModel / Dinov2Model directory."),
    lpips: Optional[Path] = typer.Option(None, "--lpips", "--lpips-weights",
                                         help="Folder: torchvision backbone .pth + lpips v0.1 head."),
    lpips_net: str = typer.Option("squeeze", "--lpips-net", help="LPIPS backbone: squeeze | alex | vgg."),
    size: Optional[int] = typer.Option(None, "--size", help="Pixel metrics at SIZE x SIZE (SmartEdit's script: 256)."),
    long_text: str = typer.Option("truncate", "--long-text", help="CLIP text > 77 tokens: truncate | chunks."),
    resamples: int = typer.Option(10000, "--resamples", min=1, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
) -> None:
    """Score one system's generated images on a benchmark manifest; print the markdown report."""
    from egoframe.evaluation.runner import MetricWeights
    from egoframe.siblings.benchmarks.protocols import BenchConfig
    from egoframe.siblings.benchmarks.scoring import run_benchmark

    def text(path):
        return str(path) if path is not None else None

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    config = BenchConfig(protocol=protocol, metrics=names,
                         weights=MetricWeights(clip=text(clip), dino=text(dino), lpips=text(lpips)),
                         lpips_net=lpips_net, size=size, long_text=long_text, resamples=resamples, seed=seed,
                         device=device, batch_size=batch_size)
    report = run_benchmark(manifest, generated, out_dir=out, config=config)
    for note in report.summary.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    typer.echo((out / "report.md").read_text())


def bench_manifest(
    reason_edit: Path = typer.Option(..., "--reason-edit", help="Reason-Edit release root (1-Left-Right/ ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest CSV to write (paths relative to its folder)."),
) -> None:
    from egoframe.siblings.benchmarks.manifest import reason_edit_manifest_from_release, write_manifest

    out.parent.mkdir(parents=True, exist_ok=True)
    rows = reason_edit_manifest_from_release(reason_edit, relative_to=out.parent)
    write_manifest(rows, out)
    typer.echo(f"{len(rows)} Reason-Edit samples -> {out}")


# ----------------------------------------------------------------- data synthesis (egoframe.siblings.synthesis)


def register_synthesis(sibling: typer.Typer) -> None:
    sibling.command("part3", help="ReasonPix2Pix Part III triplets: caption, nouns, grounding, LLM pick, "
                                  "replacement (world stand-ins where no model is given).")(part3)
    sibling.command("synth", help="SmartEdit copy-paste triplets from world frames: remove, move/rescale, "
                                  "harmonize.")(synth)


def _check_synthesis_inputs(data: Path, world: Optional[Path]) -> None:
    """Bad --data / --world fail in one line before any model loads."""
    from egoframe.data.records import load_records

    load_records(str(data))
    if world is not None:
        from egoframe.world import WorldManifest

        WorldManifest.load(str(world))


def part3(
    data: Path = typer.Option(..., "--data", help="Curated pairs (pairs.parquet, or its folder)."),
    out: Path = typer.Option(..., "--out", help="Output data set root (resumable: finished records are skipped)."),
    world: Optional[Path] = typer.Option(None, "--world", help="The embedded world the data came from "
                                         "(frames are redrawn from its states; enables the stand-ins)."),
    blip2: Optional[Path] = typer.Option(None, "--blip2", help="Local BLIP-2 directory (captioning)."),
    grounding_dino: Optional[Path] = typer.Option(None, "--grounding-dino", help="Local Grounding DINO directory."),
    gligen: Optional[Path] = typer.Option(None, "--gligen", help="Local GLIGEN inpainting pipeline directory."),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url", help="OpenAI-compatible endpoint "
                                               "(e.g. http://127.0.0.1:8000/v1) that picks the replacement."),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="Model name (default: $EGOFRAME_LLM_MODEL)."),
    device: str = typer.Option("cpu", "--device", help="torch device of the real models."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Process at most N new records."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    import os

    from egoframe.errors import ConfigError
    from egoframe.siblings.synthesis.driver import synthesize_part3
    from egoframe.siblings.synthesis.part3 import JOURNAL_FILE, part3_stages

    _check_synthesis_inputs(data, world)
    llm = None
    if llm_base_url:
        from egoframe.enrichment.openai_backend import OpenAIConfig

        llm = OpenAIConfig.from_env(base_url=llm_base_url, model=llm_model)
        if not llm.model:
            raise ConfigError("no LLM model: pass --llm-model NAME or set EGOFRAME_LLM_MODEL")

    def text(path):
        return str(path) if path is not None else None

    stages = part3_stages(blip2=text(blip2), grounding_dino=text(grounding_dino), gligen=text(gligen), llm=llm,
                          journal_path=os.path.join(str(out), JOURNAL_FILE), world=world is not None,
                          device=device)
    summary = synthesize_part3(str(data), str(out), stages, world=text(world), limit=limit, progress=progress)
    typer.echo(summary.line())


def synth(
    data: Path = typer.Option(..., "--data", help="Curated pairs of the embedded world (pairs.parquet or folder)."),
    world: Path = typer.Option(..., "--world", help="The embedded world the data came from."),
    out: Path = typer.Option(..., "--out", help="Output data set root (resumable: finished records are skipped)."),
    ops: str = typer.Option("move,scale", "--ops", help="Comma list of move, scale, remove."),
    inpaint: Optional[Path] = typer.Option(None, "--inpaint", help="Local SD inpainting pipeline directory "
                                           "(default: re-render the state without the object)."),
    harmonize: float = typer.Option(1.0, "--harmonize", help="Harmonization strength in [0, 1] (0: off)."),
    device: str = typer.Option("cpu", "--device", help="torch device of the inpainting model."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Process at most N new records."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    from egoframe.siblings.synthesis.driver import synthesize_smartedit
    from egoframe.siblings.synthesis.smartedit import SmartEditConfig
    from egoframe.siblings.synthesis.weights import DiffusersInpainter

    config = SmartEditConfig(ops=tuple(op.strip() for op in ops.split(",") if op.strip()), harmonize=harmonize)
    config.validate()
    _check_synthesis_inputs(data, world)
    inpainter = DiffusersInpainter(str(inpaint), device=device) if inpaint is not None else None
    summary = synthesize_smartedit(str(data), str(world), str(out), config, inpainter=inpainter, limit=limit,
                                   progress=progress)
    typer.echo(summary.line())
