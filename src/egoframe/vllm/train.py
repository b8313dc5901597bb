"""Visual instruction tuning of a LLaVA on (frame, question, enriched description) examples.

Full fine-tuning or LoRA (peft) of a model loaded from a llava-hf directory, or training the tiny embedded
LLaVA from scratch when no model is given. The loss is cross-entropy on the answer tokens only. As in LEGO
(papers/001 §4), a pretrained CLIP vision tower stays frozen while the projector and the LLM are trained; a
tiny model built from scratch trains its vision tower too (random features would be useless).

Output directory::

    train_config.json          the typed config (also copied into the final model)
    base/                      the untrained tiny model + tokenizer (from-scratch runs only)
    vision_pretrained/         base/ after stage 0, the vision-tower pretraining (pretrain.py; from scratch)
    checkpoints/step-XXXXXXXX/ trainable.safetensors, optimizer.safetensors, rng.safetensors, state.json
                               (egoframe.engine's layout; the newest complete one is resumed)
    train_log.jsonl            loss per logged step (a resume drops the lines after its checkpoint)
    model/                     the trained VLLM in the llava-hf layout (LoRA merged), loadable by load_vllm

Checkpoints are written to a temporary directory and renamed into place, so a kill never leaves a half
checkpoint that ``--resume`` would pick up; they hold the trainable weights, the optimizer state, the RNG
states and the data position (epoch, index), which make a resumed run continue exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

from egoframe.engine import Checkpoints, LossLog, TrainableState, TrainState, check_resumable, run_steps
from egoframe.errors import ConfigError, InputError
from egoframe.utils.checkpoint import atomic_write_text
from egoframe.utils.progress import ProgressBar
from egoframe.vllm.data import encode_instruction_batch, epoch_order, load_instruction_examples, template_choices
from egoframe.vllm.embeddings import to_pil
from egoframe.vllm.model import Vllm, load_vllm
from egoframe.vllm.pretrain import pretrain_vision_tower
from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer, tokenizer_corpus

if TYPE_CHECKING:
    import torch

TRAIN_CONFIG_FILE = "train_config.json"
PRETRAINED_DIR = "vision_pretrained"  # base/ after stage 0 (vision-tower pretraining), from-scratch runs only


@dataclass
class VllmTrainConfig:
    data_dir: str
    out_dir: str
    model_dir: str | None = None  # None: build the tiny embedded LLaVA and train it from scratch
    mode: str = "full"  # "full" | "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    train_vision_tower: bool | None = None  # None: only when training from scratch without vision pretraining
    # Stage 0 of a from-scratch run (pretrain.py): steps of vision-tower pretraining on the training split's
    # (frame, description) pairs before instruction tuning; None: 300 from scratch, 0 for a loaded model.
    pretrain_vision_steps: int | None = None
    pretrain_vision_lr: float = 2e-3
    pretrain_vision_batch_size: int = 64
    # Stage 0's pooling query reads the action label too (pretrain.py): the object a description names depends
    # on the action as well as the frame. Off: measured no better (object 62.5 % vs 60.4 %, docs/embedded/LOG.md).
    pretrain_vision_action: bool = False
    # Stage 0 also trains a reading head (pretrain.py): from every patch token in place and the action's words,
    # name the hand and the object the description names, with this cross-entropy weight; 0: off.
    pretrain_vision_reading: float = 0.0
    # Extra loss weight on the answer tokens that only the frame can decide (colours, sides): 1 + this on
    # them, 1 elsewhere, normalised to mean 1 over a batch's answer tokens. A departure from LLaVA's plain
    # cross-entropy: a tiny LLaVA learns the rest of a description from the question alone and, measured, names
    # the commonest cup colour every time (docs/embedded/LOG.md); 0 (LLaVA, LEGO) turns it off.
    grounded_weight: float = 0.0
    grounded_words: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "purple", "orange", "left",
                                       "right", "centre", "board", "knife", "tomato", "cup", "bowl", "drawer")
    epochs: int = 3  # LEGO fine-tunes for 3 epochs
    max_steps: int | None = None  # stop earlier than `epochs` (counts optimizer steps)
    batch_size: int = 16
    grad_accum: int = 1
    lr: float | None = None  # None: 1e-3 from scratch, 2e-4 LoRA, 2e-5 full fine-tuning
    weight_decay: float = 0.0
    warmup_steps: int = 20
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    precision: str = "auto"  # "auto" (bf16 autocast on a bf16-capable GPU, else fp32) | "fp32" | "bf16"
    device: str | None = None  # None: cuda if available, else cpu
    seed: int = 0
    save_every: int = 200  # optimizer steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 2
    log_every: int = 10
    train_splits: tuple[str, ...] = ("train",)
    num_threads: int | None = 2  # CPU threads for torch (None: leave torch's default)
    tiny: TinyVllmConfig = field(default_factory=TinyVllmConfig)

    def __post_init__(self) -> None:
        if isinstance(self.tiny, dict):
            self.tiny = TinyVllmConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.tiny.items()})
        self.lora_targets = tuple(self.lora_targets)
        self.train_splits = tuple(self.train_splits)
        if self.grounded_weight < 0:
            raise ConfigError(f"grounded_weight must be >= 0, got {self.grounded_weight}")
        if self.mode not in ("full", "lora"):
            raise ConfigError(f"mode must be 'full' or 'lora', got {self.mode!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ConfigError("batch_size, grad_accum and epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be >= 1")
        if self.save_every < 1 or self.log_every < 1:
            raise ConfigError("save_every and log_every must be >= 1")
        if self.pretrain_vision_steps is not None and self.pretrain_vision_steps < 0:
            raise ConfigError("pretrain_vision_steps must be >= 0")
        if self.pretrain_vision_reading < 0:
            raise ConfigError(f"pretrain_vision_reading must be >= 0, got {self.pretrain_vision_reading}")
        if self.pretrain_vision_reading and not self.resolved_pretrain_steps():
            raise ConfigError("--pretrain-vision-reading trains a head in stage 0: it needs --pretrain-vision-steps > 0 "
                              "(a model built from scratch)")
        if self.pretrain_vision_steps and not self.from_scratch:
            raise ConfigError("--pretrain-vision-steps is for the tiny model built from scratch; a loaded LLaVA "
                              "brings its own pretrained vision tower")

    def resolved_pretrain_steps(self) -> int:
        if self.pretrain_vision_steps is not None:
            return self.pretrain_vision_steps
        return 300 if self.from_scratch else 0

    def resolved_train_vision(self) -> bool:
        if self.train_vision_tower is not None:
            return self.train_vision_tower
        # LLaVA keeps a pretrained tower frozen; a random one (no stage 0) has to learn with the rest.
        return self.from_scratch and self.resolved_pretrain_steps() == 0

    @property
    def from_scratch(self) -> bool:
        return self.model_dir is None

    def resolved_lr(self) -> float:  # noqa: E301
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.from_scratch else (2e-4 if self.mode == "lora" else 2e-5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VllmTrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown VLLM training config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def save(self, path: str) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))


# Settings that may differ between a run and its resumption (how long to go on, how often to save/log).
_RESUMABLE_CHANGES = {"epochs", "max_steps", "save_every", "keep_checkpoints", "log_every", "num_threads", "device"}


@dataclass
class TrainResult:
    model_dir: str
    steps: int
    final_loss: float
    seconds: float
    n_examples: int


# ----------------------------------------------------------------------------------------- file helpers


# ----------------------------------------------------------------------------------------- model setup


def _build_or_load(config: VllmTrainConfig, examples, resume: bool, images=None, progress: bool = False) -> "Vllm":
    if not config.from_scratch:
        return load_vllm(config.model_dir)
    base_dir = os.path.join(config.out_dir, "base")
    pretrained_dir = os.path.join(config.out_dir, PRETRAINED_DIR)
    pretrain_steps = config.resolved_pretrain_steps()
    if resume and pretrain_steps and os.path.isdir(pretrained_dir):
        return load_vllm(pretrained_dir)
    if resume and os.path.isdir(base_dir):
        vllm = load_vllm(base_dir)
    else:
        # The vocabulary comes from the training descriptions only; held-out descriptions stay unseen.
        all_actions = [ex.action for ex in examples]
        tokenizer = build_word_tokenizer(tokenizer_corpus([ex.description for ex in examples], all_actions))
        vllm = build_tiny_vllm(tokenizer, config.tiny, seed=config.seed)
        _save_model_dir(vllm, base_dir)
        vllm = load_vllm(base_dir)  # reload so that a resumed run starts from the very same objects
    if not pretrain_steps:
        return vllm
    vllm = _pretrain_vision(config, vllm, examples, images, progress)
    _save_model_dir(vllm, pretrained_dir)
    return load_vllm(pretrained_dir)


def _save_model_dir(vllm: "Vllm", out: str) -> None:
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    vllm.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def grounded_token_ids(tokenizer, words) -> "torch.Tensor":
    """Ids of the tokens that spell one of ``words`` (whole-word tokens; with a sub-word tokenizer, the
    tokens that decode to the word, with or without a leading space)."""
    import torch

    vocab = tokenizer.get_vocab()
    wanted = {w.lower() for w in words}
    ids = [i for tok, i in vocab.items() if tok.lower().lstrip("Ġ▁ ") in wanted]
    return torch.tensor(sorted(ids), dtype=torch.long)


def grounded_loss(logits: "torch.Tensor", labels: "torch.Tensor", grounded_ids: "torch.Tensor",
                  weight: float) -> "torch.Tensor":
    """Next-token cross-entropy on the answer tokens (labels != -100), each weighted 1 + ``weight`` when it
    is one of ``grounded_ids`` and 1 otherwise, normalised so the weights average 1 (same scale as the plain
    loss)."""
    import torch

    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != -100
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).clamp(min=0),
                                           reduction="none").view_as(labels)
    w = 1.0 + weight * torch.isin(labels, grounded_ids).float()
    w = w * mask
    return (ce * w).sum() / w.sum().clamp(min=1e-8)


def _pretrain_vision(config: VllmTrainConfig, vllm: "Vllm", examples, images, progress: bool) -> "Vllm":
    """Stage 0 (pretrain.py): the tiny vision tower learns from (frame, description) pairs of the training split."""
    import torch

    images = images or _ImageCache()
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vllm.model.to(device)
    pixel_values = torch.cat([
        vllm.processor.image_processor(images=[images(e.image_path) for e in examples[i:i + 256]],
                                       return_tensors="pt")["pixel_values"]
        for i in range(0, len(examples), 256)])
    steps = config.resolved_pretrain_steps()
    bar = ProgressBar(progress, "vision pretrain", steps, fields={"loss": "-"}).start()

    def on_step(step: int, loss: float) -> None:
        bar.advance(loss=f"{loss:.3f}")

    try:
        result = pretrain_vision_tower(vllm, pixel_values, [e.description for e in examples], steps=steps,
                                       batch_size=config.pretrain_vision_batch_size, lr=config.pretrain_vision_lr,
                                       seed=config.seed, on_step=on_step,
                                       actions=[e.action for e in examples]
                                       if config.pretrain_vision_action or config.pretrain_vision_reading else None,
                                       pool_on_action=config.pretrain_vision_action,
                                       reading_weight=config.pretrain_vision_reading)
    finally:
        bar.close()
    with open(os.path.join(config.out_dir, "train_log.jsonl"), "a") as f:
        f.write(json.dumps({"stage": "vision_pretrain", "steps": result.steps, "loss": result.final_loss,
                            "n_grams": result.n_grams, "reading_accuracy": result.reading_accuracy,
                            "seconds": round(result.seconds, 2)}) + "\n")
    return vllm


def _prepare_trainable(vllm: "Vllm", config: VllmTrainConfig):
    """Freeze/unfreeze per config; wrap with LoRA if asked. Returns the module to train."""
    model = vllm.model
    train_vision = config.resolved_train_vision()
    for name, param in model.named_parameters():
        param.requires_grad = train_vision or "vision_tower" not in name
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.mode == "lora":
        from peft import LoraConfig, get_peft_model

        targets = "|".join(config.lora_targets)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=rf".*language_model.*\.({targets})",
                          modules_to_save=["multi_modal_projector"] + (["vision_tower"] if train_vision else []))
        model = get_peft_model(model, lora)
    return model


def _autocast(config: VllmTrainConfig, device: "torch.device"):
    import contextlib

    import torch

    if config.precision == "fp32":
        return contextlib.nullcontext()
    if config.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------- checkpoints


def _checkpoints(out_dir: str, keep: int = 2) -> Checkpoints:
    return Checkpoints(os.path.join(out_dir, "checkpoints"), keep=keep)


def latest_checkpoint(out_dir: str) -> str | None:
    """The newest complete checkpoint of a training run, or None."""
    return _checkpoints(out_dir).latest()


def _check_resume_config(config: VllmTrainConfig) -> None:
    path = os.path.join(config.out_dir, TRAIN_CONFIG_FILE)
    if os.path.exists(path):
        with open(path) as f:
            check_resumable(json.load(f), config.to_dict(), config.out_dir, free=_RESUMABLE_CHANGES)


# ----------------------------------------------------------------------------------------- the loop


class _ImageCache:
    """Decoded frames kept in memory: small data sets are read from disk once, not once per epoch."""

    def __init__(self, limit: int = 50_000):
        self.limit = limit
        self.images: dict[str, Any] = {}

    def __call__(self, path: str):
        image = self.images.get(path)
        if image is None:
            image = to_pil(path)
            if len(self.images) < self.limit:
                self.images[path] = image
        return image


def train_vllm(config: VllmTrainConfig, *, resume: bool = False,
               progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Run (or resume) visual instruction tuning; returns where the trained VLLM was written."""
    import torch

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    examples = load_instruction_examples(config.data_dir, splits=config.train_splits)
    checkpoint = latest_checkpoint(config.out_dir) if resume else None
    if resume:
        _check_resume_config(config)
    elif os.path.isdir(config.out_dir) and latest_checkpoint(config.out_dir):
        raise InputError(f"{config.out_dir} already holds a training run: pass --resume to continue it, "
                         "or choose a new --out")
    os.makedirs(config.out_dir, exist_ok=True)
    config.save(os.path.join(config.out_dir, TRAIN_CONFIG_FILE))

    started = time.monotonic()  # stage 0 included
    torch.manual_seed(config.seed)
    images = _ImageCache()
    vllm = _build_or_load(config, examples, resume, images=images, progress=progress)
    torch.manual_seed(config.seed)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vllm.model.to(device)
    model = _prepare_trainable(vllm, config)
    model.train()
    lr = config.resolved_lr()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=config.weight_decay)

    steps_per_epoch = math.ceil(len(examples) / (config.batch_size * config.grad_accum))
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    saver = _checkpoints(config.out_dir, config.keep_checkpoints)
    state = TrainState(tensors={"trainable": TrainableState(model)}, optimizer=optimizer)
    step, data = 0, {"epoch": 0, "position": 0, "loss": float("nan")}
    if checkpoint:
        record = saver.load(checkpoint, state)
        step, data = record["step"], {k: record[k] for k in data}

    log = LossLog(os.path.join(config.out_dir, "train_log.jsonl"))
    log.resume(step)
    grounded_ids = grounded_token_ids(vllm.processor.tokenizer, config.grounded_words).to(device)

    def step_fn(step: int):
        order = epoch_order(len(examples), config.seed, data["epoch"])
        if data["position"] >= len(order):
            data["epoch"], data["position"] = data["epoch"] + 1, 0
            order = epoch_order(len(examples), config.seed, data["epoch"])
        templates = template_choices(len(examples), config.seed, data["epoch"])
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        optimizer.zero_grad(set_to_none=True)
        total_loss, n_micro = 0.0, 0
        for _ in range(config.grad_accum):
            idx = order[data["position"]:data["position"] + config.batch_size]
            if not idx:
                break
            data["position"] += len(idx)
            batch = encode_instruction_batch(
                vllm, [images(examples[i].image_path) for i in idx], [examples[i].action for i in idx],
                [examples[i].description for i in idx], [templates[i] for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            batch["pixel_values"] = batch["pixel_values"].to(vllm.dtype)
            with _autocast(config, device):
                if config.grounded_weight:
                    labels = batch.pop("labels")
                    loss = grounded_loss(model(**batch).logits, labels, grounded_ids, config.grounded_weight)
                else:
                    loss = model(**batch).loss
            (loss / config.grad_accum).backward()
            total_loss += float(loss.detach())
            n_micro += 1
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        data["loss"] = total_loss / max(1, n_micro)
        return data["loss"], {"epoch": data["epoch"], "seconds": round(time.monotonic() - started, 2)}

    with ProgressBar(progress, "vllm train", total_steps, step, fields={"loss": "-", "epoch": data["epoch"]}) as bar:
        run_steps(step_fn, step, total_steps, bar=bar, log=log, log_every=config.log_every, after_step=on_step,
                  checkpoint=lambda done: saver.save(done, state, **data), checkpoint_every=config.save_every,
                  checkpoint_at_end=True, advice="lower --lr")
    step = max(step, total_steps)
    if saver.latest() is None:
        saver.save(step, state, **data)
    loss_value = data["loss"]
    model_dir = _export(config, vllm, model)
    return TrainResult(model_dir=model_dir, steps=step, final_loss=loss_value,
                       seconds=time.monotonic() - started, n_examples=len(examples))


def _export(config: VllmTrainConfig, vllm: "Vllm", model) -> str:
    """Write the trained model (LoRA merged into the weights) as a llava-hf directory."""
    if config.mode == "lora":
        model = model.merge_and_unload()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.eval()
    for param in model.parameters():
        param.requires_grad = True
    out = os.path.join(config.out_dir, "model")
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    Vllm(model=model, processor=vllm.processor).save_pretrained(tmp)
    config.save(os.path.join(tmp, TRAIN_CONFIG_FILE))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
