"""`egoframe eval`: score the methods of a generation set; `egoframe convert-egovlp`: public checkpoint -> safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("eval", help="Evaluate every method of a generation set (samples.csv) with n and bootstrap CIs.")(
        evaluate)
    app.command("eval-world", help="The embedded-world protocol: fresh world -> curate -> enrich -> generate -> "
                                   "score with the shipped oracle (copy = floor, target = ceiling).")(eval_world)
    app.command("convert-egovlp", help="Convert the public EgoVLP .pth to egovlp.safetensors (no unpickling).")(
        convert_egovlp)


def _split(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def eval_world(
    model: Path = typer.Option(..., "--model", help="egoframe model directory (e.g. src/egoframe/assets/default-model)."),
    world_seed: int = typer.Option(..., "--world-seed", help="Seed of the fresh world: one never used for training "
                                                             "or for choosing settings."),
    out: Path = typer.Option(..., "--out", help="Output folder (world, data, frames, summary.json, report.md); "
                                                "a rerun resumes it."),
    videos: int = typer.Option(400, "--videos", help="Videos in the fresh world."),
    n: int = typer.Option(200, "--n", help="Held-out pairs to score (all when fewer)."),
    methods: str = typer.Option("vllm,annotation,label,copy", "--methods", help="Comma list of vllm,annotation,label,copy,roundtrip (roundtrip: the true target through the model's autoencoder, its decoder's ceiling)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's sampling.json)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale",
                                                   help="Text guidance s_T (default: the model's sampling.json)."),
    image_guidance_scale: Optional[float] = typer.Option(None, "--image-guidance-scale",
                                                         help="Image guidance s_I (default: sampling.json)."),
    guidance_interval: Optional[str] = typer.Option(None, "--guidance-interval",
                                                    help="a,b: guide on this fraction of the steps (default: sampling.json)."),
    split: str = typer.Option("test", "--split", help="test: the curated test split; all: every curated pair."),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="Pair selection and per-pair noise seed."),
    oracle: Optional[Path] = typer.Option(None, "--oracle", help="Oracle directory (default: the shipped oracle)."),
    threads: Optional[int] = typer.Option(None, "--threads"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    from egoframe.errors import InputError
    from egoframe.workflows.eval_world import EvalWorldConfig, run_eval_world

    interval = None
    if guidance_interval is not None:
        try:
            interval = tuple(float(x) for x in guidance_interval.split(","))
        except ValueError:
            interval = ()
        if len(interval) != 2:
            raise InputError(f"--guidance-interval takes two fractions a,b, got {guidance_interval!r}")
    summary = run_eval_world(EvalWorldConfig(
        model=str(model), out=str(out), world_seed=world_seed, videos=videos, n=n,
        methods=tuple(_split(methods) or ()), steps=steps, split=split, batch_size=batch_size, seed=seed,
        guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale, guidance_interval=interval,
        oracle=str(oracle) if oracle else None, threads=threads, progress=progress), say=typer.echo)
    for name, e in summary["methods"].items():
        lo, hi = e["action_success_ci"]
        typer.echo(f"{name:>10}: action success {100 * e['action_success']:5.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]  "
                   f"state acc {100 * e['state_accuracy']:.1f} %  PSNR {e['psnr']:.2f}")
    typer.echo(f"-> {out}/report.md")


def evaluate(
    set_dir: Path = typer.Argument(..., help="Generation set directory holding samples.csv (docs/formats.md)."),
    metrics: str = typer.Option("psnr,ssim,l1,l2", "--metrics",
                                help="Comma list: psnr,ssim,l1,l2,lpips,lpips-alex,lpips-vgg,fid,clip-i,clip-t,dino,"
                                     "egovlp,egovlp+,blip-b,blip-l,action-success,state-acc."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for scores.csv/parquet and summary.json/md."),
    method: Optional[str] = typer.Option(None, "--method", "--methods", help="Comma list of method columns (default: all)."),
    reference_dir: Optional[Path] = typer.Option(None, "--reference-dir", help="Resolve input/target paths here."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="Folder: torchvision backbone .pth + lpips v0.1 head."),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Local CLIPModel directory."),
    dino: Optional[Path] = typer.Option(None, "--dino", help="Local DINO ViTModel / Dinov2Model directory."),
    inception: Optional[Path] = typer.Option(None, "--inception", help="pt_inception-2015-12-05-6726825d.pth (FID)."),
    egovlp: Optional[Path] = typer.Option(None, "--egovlp", help="egovlp.safetensors (tokenizer files beside it)."),
    blip_b: Optional[Path] = typer.Option(None, "--blip-b", help="BLIP captioning base directory."),
    blip_l: Optional[Path] = typer.Option(None, "--blip-l", help="BLIP captioning large directory."),
    text_model: Optional[Path] = typer.Option(None, "--text-model", help="Sentence-embedding directory for BLIP-B/L."),
    oracle: Optional[Path] = typer.Option(None, "--oracle", help="Oracle state reader dir (`egoframe oracle train`)."),
    world: Optional[Path] = typer.Option(None, "--world", help="The embedded world (true states for oracle metrics)."),
    clip_frames: int = typer.Option(4, "--clip-frames", help="EgoVLP clip length: 4 (Ego4D) or 16 (EPIC)."),
    clip_text: str = typer.Option("description", "--clip-text", help="CLIP-T text: description | action."),
    long_text: str = typer.Option("truncate", "--long-text", help="CLIP text > 77 tokens: truncate (keeps EOT) | chunks."),
    resamples: int = typer.Option(10000, "--resamples", min=1, help="Bootstrap resamples for means and paired tests."),
    fid_resamples: int = typer.Option(100, "--fid-resamples", min=1, help="Bootstrap resamples for the FID interval."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
) -> None:
    """Score SET_DIR's methods against its targets; write per-sample scores and a summary to --out."""
    from egoframe.evaluation.runner import EvalConfig, MetricWeights, evaluate_folder

    def text(path):
        return str(path) if path is not None else None

    config = EvalConfig(
        metrics=_split(metrics) or [], methods=_split(method),
        weights=MetricWeights(lpips=text(lpips_weights), clip=text(clip), dino=text(dino), inception=text(inception),
                              egovlp=text(egovlp), blip_b=text(blip_b), blip_l=text(blip_l), text_model=text(text_model),
                              oracle=text(oracle), world=text(world)),
        clip_frames=clip_frames, clip_text=clip_text, long_text=long_text, resamples=resamples,
        fid_resamples=fid_resamples, seed=seed, device=device, batch_size=batch_size)
    report = evaluate_folder(set_dir, reference_dir, out_dir=out, config=config)
    for note in report.summary.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    typer.echo((out / "summary.md").read_text())


def convert_egovlp(
    source: Path = typer.Argument(..., help="Public EgoVLP checkpoint (egovlp.pth) or a re-saved state dict."),
    target: Path = typer.Argument(..., help="Output egovlp.safetensors."),
) -> None:
    from egoframe.evaluation.egovlp import convert_egovlp_checkpoint

    typer.echo(str(convert_egovlp_checkpoint(source, target)))
