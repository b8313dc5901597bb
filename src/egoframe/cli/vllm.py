"""`egoframe vllm ...`: instruction-tune a LLaVA, let it describe a frame, cache its embeddings, score it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

vllm_app = typer.Typer(help="The visual LLM (LLaVA): instruction tuning, descriptions, embeddings.",
                       no_args_is_help=True)


def _extraction(template: int, n_text_tokens: int, max_new_tokens: int):
    from egoframe.vllm.embeddings import ExtractionConfig

    return ExtractionConfig(question_template=template, n_text_tokens=n_text_tokens, max_new_tokens=max_new_tokens)


def _threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


@vllm_app.command("train")
def train(
    data_dir: Path = typer.Argument(..., help="Curated data set (pairs.parquet + frames), enriched."),
    out: Path = typer.Option(..., "--out", help="Run directory: checkpoints, logs, config, model/."),
    model: Optional[Path] = typer.Option(None, "--model", help="llava-hf style directory to fine-tune; "
                                         "omitted: build the tiny embedded LLaVA and train it from scratch."),
    mode: str = typer.Option("full", "--mode", help="full | lora"),
    epochs: int = typer.Option(3, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    batch_size: int = typer.Option(16, "--batch-size"),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Default: 1e-3 from scratch, 2e-4 LoRA, 2e-5 full."),
    lora_r: int = typer.Option(8, "--lora-r"),
    lora_alpha: int = typer.Option(16, "--lora-alpha"),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing/--no-gradient-checkpointing"),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on a bf16 GPU) | fp32 | bf16"),
    device: Optional[str] = typer.Option(None, "--device", help="Default: cuda if available, else cpu."),
    seed: int = typer.Option(0, "--seed"),
    save_every: int = typer.Option(200, "--save-every", help="Optimizer steps between checkpoints."),
    pretrain_vision_steps: Optional[int] = typer.Option(
        None, "--pretrain-vision-steps", help="From scratch: steps of vision-tower pretraining on the training "
        "split's (frame, description) pairs before instruction tuning, tower frozen after (default 300; 0: none, "
        "the tower trains with the rest)."),
    pretrain_vision_action: bool = typer.Option(
        False, "--pretrain-vision-action/--no-pretrain-vision-action", help="Stage 0's pooling query also reads the "
        "action label (the object a description names depends on the action, not only the frame)."),
    pretrain_vision_reading: float = typer.Option(
        0.0, "--pretrain-vision-reading", help="From scratch: stage 0 also trains the tower to name the hand and "
        "the object the description names, from all patch tokens and the action (this loss weight; 0: off)."),
    grounded_weight: float = typer.Option(
        0.0, "--grounded-weight", help="Extra loss weight on answer words only the frame decides (colours, sides); "
        "0: LLaVA's plain loss."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    threads: int = typer.Option(2, "--threads", help="CPU threads for torch (0: torch's default)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Visual instruction tuning on (frame, question about the action, enriched description)."""
    from egoframe.vllm.train import VllmTrainConfig, train_vllm

    config = VllmTrainConfig(
        data_dir=str(data_dir), out_dir=str(out), model_dir=str(model) if model else None, mode=mode,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, lora_r=lora_r,
        lora_alpha=lora_alpha, gradient_checkpointing=gradient_checkpointing, precision=precision, device=device,
        seed=seed, save_every=save_every, num_threads=threads or None, pretrain_vision_steps=pretrain_vision_steps,
        pretrain_vision_action=pretrain_vision_action, pretrain_vision_reading=pretrain_vision_reading,
        grounded_weight=grounded_weight)
    result = train_vllm(config, resume=resume, progress=not quiet)
    typer.echo(f"trained {result.steps} steps on {result.n_examples} examples in {result.seconds:.0f} s, "
               f"last loss {result.final_loss:.3f} -> {result.model_dir}")


@vllm_app.command("describe")
def describe(
    model: Path = typer.Option(..., "--model", help="VLLM directory (llava-hf layout)."),
    image: Path = typer.Option(..., "--image", help="The first-person frame."),
    action: str = typer.Option(..., "--action", help='Action label, e.g. "take cup".'),
    template: int = typer.Option(0, "--template", help="Question template 0-9."),
    max_new_tokens: int = typer.Option(77, "--max-new-tokens"),
    threads: int = typer.Option(2, "--threads"),
) -> None:
    """Print the VLLM's (greedy) description of how the action is done in the frame."""
    from egoframe.vllm.embeddings import describe_frames
    from egoframe.vllm.model import load_vllm

    _threads(threads)
    config = _extraction(template, 77, max_new_tokens)
    vllm = load_vllm(str(model))
    typer.echo(describe_frames(vllm, [str(image)], [action], config)[0])


@vllm_app.command("embed")
def embed(
    data_dir: Path = typer.Argument(..., help="Curated data set (pairs.parquet + frames)."),
    model: Path = typer.Option(..., "--model", help="VLLM directory (llava-hf layout)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Cache directory (default DATA_DIR/vllm_embeddings)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    shard_size: int = typer.Option(256, "--shard-size", help="Items per safetensors shard."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: the VLLM's)."),
    template: int = typer.Option(0, "--template", help="Question template 0-9."),
    n_text_tokens: int = typer.Option(77, "--n-text-tokens", help="N: H_t is padded/truncated to this."),
    max_new_tokens: int = typer.Option(77, "--max-new-tokens"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="Only these splits (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device"),
    threads: int = typer.Option(2, "--threads"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Cache H_i, H_t (+ mask) and the description of every pair; a rerun resumes."""
    from egoframe.vllm.cache import build_embedding_cache
    from egoframe.vllm.model import parse_dtype, load_vllm

    _threads(threads)
    config = _extraction(template, n_text_tokens, max_new_tokens)
    vllm = load_vllm(str(model), device=device)
    result = build_embedding_cache(vllm, str(data_dir), str(out) if out else None, config=config,
                                   batch_size=batch_size, shard_size=shard_size, dtype=parse_dtype(dtype),
                                   splits=split or None, progress=not quiet, model_dir=str(model))
    typer.echo(f"{result.n_items} items in {result.n_shards} shards ({result.computed_shards} computed, "
               f"{result.skipped_shards} already done) -> {result.cache_dir}")


@vllm_app.command("import-features")
def import_features(
    data_dir: Path = typer.Argument(..., help="Curated data set (e.g. `data curate --format lego`)."),
    image_features: Path = typer.Option(..., "--image-features", help="Folder of the released H_i .npy files."),
    text_features: Path = typer.Option(..., "--text-features", help="Folder of the released H_t .npy files."),
    out: Optional[Path] = typer.Option(None, "--out", help="Cache directory (default DATA_DIR/vllm_embeddings)."),
    n_text_tokens: int = typer.Option(77, "--n-text-tokens", min=1, help="N: H_t is padded/truncated to this."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Use LEGO's released VLLM features as this data set's embedding cache (referenced, memory-mapped;
    `egoframe train` then reads them like `vllm embed`'s)."""
    from egoframe.vllm.cache import import_npy_features

    result = import_npy_features(str(data_dir), str(image_features), str(text_features), str(out) if out else None,
                                 n_text_tokens=n_text_tokens, progress=not quiet)
    typer.echo(f"{result.n_items} pairs with features (d_llm {result.d_llm}, {result.n_image_tokens} image tokens), "
               f"{len(result.missing)} without (listed in the index) -> {result.cache_dir}")


@vllm_app.command("convert-llava")
def convert_llava(
    src: Path = typer.Argument(..., help="Original-layout LLaVA folder (haotian-liu/LLaVA: LlavaLlamaForCausalLM)."),
    vision_tower: Path = typer.Option(..., "--vision-tower",
                                      help="Local CLIP folder of its mm_vision_tower (used unless the checkpoint "
                                           "carries its own tower)."),
    out: Path = typer.Option(..., "--out", help="llava-hf model directory to write (safetensors)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float16 | bfloat16 | float32 (default: as stored)."),
) -> None:
    """Convert an original-layout LLaVA (e.g. LEGO's released VLLM) to the llava-hf layout egoframe loads."""
    from egoframe.vllm.convert import convert_original_llava

    summary = convert_original_llava(str(src), str(vision_tower), str(out), dtype=dtype)
    typer.echo(f"{summary['out']}: llava-hf layout, {summary['projector']} projector, {summary['image_tokens']} image "
               f"tokens, d_llm {summary['d_llm']}, {summary['added_tokens']} token(s) added, vision tower from "
               f"{summary['vision_tower_from']}")
    if summary["aspect_ratio"] == "pad":
        typer.echo("note: the original pads frames to a square (image_aspect_ratio 'pad'); llava-hf's processor "
                   "resizes and centre-crops, so give it square frames for the original's behaviour", err=True)


@vllm_app.command("evaluate")
def evaluate(
    data_dir: Path = typer.Argument(..., help="Curated, enriched data set."),
    model: Path = typer.Option(..., "--model", help="VLLM directory (llava-hf layout)."),
    split: list[str] = typer.Option(["test"], "--split", help="Held-out split(s) (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N held-out pairs."),
    batch_size: int = typer.Option(16, "--batch-size"),
    template: int = typer.Option(0, "--template"),
    max_new_tokens: int = typer.Option(77, "--max-new-tokens"),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the scores (JSON) here."),
    threads: int = typer.Option(2, "--threads"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Accuracy of the hand and object named in the VLLM's descriptions, with chance levels."""
    import json

    from egoframe.vllm.evaluate import evaluate_descriptions
    from egoframe.vllm.model import load_vllm

    _threads(threads)
    vllm = load_vllm(str(model))
    scores = evaluate_descriptions(vllm, str(data_dir), splits=split, limit=limit, batch_size=batch_size,
                                   config=_extraction(template, 77, max_new_tokens), progress=not quiet)
    for line in scores.lines():
        typer.echo(line)
    if report:
        data = scores.to_dict()
        data.update(model=str(model), data_dir=str(data_dir), splits=list(split), template=template)
        report.write_text(json.dumps(data, indent=1))


@vllm_app.command("ceiling")
def ceiling(
    data_dir: Path = typer.Argument(..., help="Curated, enriched data set whose held-out split is scored."),
    train_data: Path = typer.Option(..., "--train", help="Enriched data set whose train split trains the classifier "
                                                          "(e.g. `egoframe world pairs` output)."),
    split: str = typer.Option("test", "--split", help="Held-out split of DATA_DIR (test | all)."),
    steps: int = typer.Option(1500, "--steps", min=1),
    max_train: int = typer.Option(20000, "--max-train", min=1, help="At most this many training pairs."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the scores (JSON) here."),
    threads: int = typer.Option(2, "--threads"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """The reading ceiling: hand / object accuracy of a supervised classifier on the frames `vllm evaluate` scores."""
    import json

    from egoframe.vllm.ceiling import CeilingConfig, reading_ceiling

    _threads(threads)
    result = reading_ceiling(CeilingConfig(train_data=str(train_data), eval_data=str(data_dir), split=split,
                                           steps=steps, max_train=max_train), progress=not quiet)
    typer.echo(f"held-out pairs: {result['n']} (classifier trained on {result['train_pairs']} pairs)")
    typer.echo(f"hand:   {result['hand_accuracy']:6.1%}   object: {result['object_accuracy']:6.1%}  "
               "(the best a supervised reader of these frames did: the VLLM's ceiling)")
    if report:
        report.write_text(json.dumps(result, indent=1))


def register(app: typer.Typer) -> None:
    app.add_typer(vllm_app, name="vllm")
