"""Typed training configuration (YAML in, validated before any work starts, saved beside checkpoints)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from egoframe.errors import ConfigError
from egoframe.models.ablations import AblationName, ablation_uses_descriptions, ablation_uses_vllm
from egoframe.utils.config import StrictModel, load_yaml_config, validate_config


class DataConfig(StrictModel):
    root: str  # a curated data set (pairs.parquet + shards), from `egoframe data curate`
    split: str = "train"
    val_split: str = "test"
    resolution: int = Field(64, ge=8)
    # Paper: horizontal flip. Off by default: descriptions and VLLM embeddings name the hand, and a
    # mirrored frame turns the right hand into the left (refused together with VLLM embeddings).
    flip: bool = False
    # Random crop keeping at least this fraction of each side, the same crop for input and target.
    crop_scale: float = Field(1.0, gt=0.0, le=1.0)
    vllm_cache: str | None = None  # `egoframe vllm embed` output; required by variants with VLLM tokens
    # Encode VAE latents and CLIP text once (frozen parts); only without flip/crop augmentation.
    precompute: bool = True
    # Threads that decode the next batch's frames while the current step trains (used when the frames are
    # not precomputed, i.e. with flip/crop augmentation or precompute: false); 0 decodes in the loop.
    num_workers: int = Field(0, ge=0, le=64)


class ModelConfig(StrictModel):
    # "tiny": build the embedded-default architecture; otherwise a Stable Diffusion 1.5 directory or
    # an egoframe model directory to fine-tune.
    init: str = "tiny"
    ablation: AblationName = "lego"
    vae: str | None = None  # a trained VAE directory for the tiny architecture (`egoframe vae train`)
    tiny: dict = Field(default_factory=dict)  # TinyConfig overrides
    use_text_mask: bool = True  # False reproduces the public code (no padding mask on H_t)
    vllm: str | None = None  # VLLM directory saved with the final model for on-the-fly inference
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    # "edit": the 8-channel image-editing UNet (LEGO / IP2P); "t2i": a 4-channel text-to-image UNet on the
    # target frames + text, the fine-tuned SD that the SDEdit baseline samples from (LEGO Table 1).
    mode: Literal["edit", "t2i"] = "edit"


class OptimConfig(StrictModel):
    lr: float = Field(1e-4, gt=0)  # LEGO: AdamW, 1e-4 constant
    weight_decay: float = Field(1e-2, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = Field(32, ge=1)  # per process
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(1000, ge=1)  # optimizer steps
    warmup_steps: int = Field(0, ge=0)
    # Cosine decay of the learning rate from step decay_start to max_steps, down to lr * final_lr_ratio
    # (Loshchilov & Hutter 2017, SGDR's half-cosine without restarts). None keeps LEGO's constant rate. It
    # is a function of the step, so a run resumed with a larger max_steps decays over the new length.
    decay_start: int | None = Field(None, ge=0)
    final_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)  # 0 disables
    ema_decay: float = Field(0.9999, ge=0, lt=1)  # LEGO: 0.9999, with the usual warm-up for short runs
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    # UNet weights and inputs in NHWC (channels_last) memory format; benchmarks/bench_training.py says when it
    # pays (docs/performance.md). The exported model is written in the ordinary layout either way.
    channels_last: bool = False
    # torch.compile the UNet (in place, so checkpoint keys are unchanged). Needs a C++ compiler on CPU and
    # costs a long first step.
    compile: bool = False
    # Extra loss weight on the latent positions where input and target differ (the edit), a departure from
    # LEGO's plain MSE: in an egocentric pair most of the frame is unchanged, so plain MSE mostly teaches
    # copying. The weight map is 1 + change_weight on changed positions (dilated by one latent pixel), 1
    # elsewhere, normalised to mean 1 per batch. 0 (the papers) turns it off.
    change_weight: float = Field(0.0, ge=0)


class DropoutConfig(StrictModel):
    # Classifier-free guidance dropout (LEGO supp. F.4): 5 % text (VLLM embeddings go with it),
    # 5 % image, 5 % both.
    text: float = Field(0.05, ge=0, le=1)
    image: float = Field(0.05, ge=0, le=1)
    both: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _sum(self):
        if self.text + self.image + self.both > 1:
            raise ValueError("dropout probabilities must sum to at most 1")
        return self


class LogConfig(StrictModel):
    out_dir: str
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    sample_every: int = Field(0, ge=0)  # 0: only at the end
    num_samples: int = Field(4, ge=0)
    sample_steps: int = Field(20, ge=1)
    sample_image_scale: float = 1.5  # small models want far less guidance than the paper's 7.5 / 1.5
    sample_text_scale: float = 1.5
    # fractions of the sampling steps that are guided (Kynkäänniemi et al. 2024); with the steps and the two
    # scales it is the sampling the exported model recommends (its sampling.json)
    sample_guidance_interval: tuple[float, float] = (0.0, 1.0)
    tensorboard: bool = True  # used when the package is installed

    @model_validator(mode="after")
    def _interval(self) -> "LogConfig":
        lo, hi = self.sample_guidance_interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"sample_guidance_interval must satisfy 0 <= lo <= hi <= 1, got ({lo}, {hi})")
        return self


class TrainConfig(StrictModel):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    dropout: DropoutConfig = Field(default_factory=DropoutConfig)
    log: LogConfig
    seed: int = 0

    @property
    def needs_descriptions(self) -> bool:
        return ablation_uses_descriptions(self.model.ablation)

    @property
    def needs_vllm(self) -> bool:
        return ablation_uses_vllm(self.model.ablation)

    @model_validator(mode="after")
    def _consistent(self):
        if self.needs_vllm and not self.data.vllm_cache:
            raise ValueError(
                f"ablation {self.model.ablation!r} conditions on VLLM embeddings: set data.vllm_cache "
                "(made by `egoframe vllm embed`)"
            )
        if self.model.mode == "t2i" and self.needs_vllm:
            raise ValueError(f"model.mode t2i conditions on text only: use ablation labels or descriptions, "
                             f"not {self.model.ablation!r}")
        if self.needs_vllm and self.data.flip:
            raise ValueError("data.flip mirrors the frame but not its VLLM embeddings: turn one of them off")
        return self

    def check_paths(self) -> None:
        """Paths must exist before any work starts."""
        for name, path in (("data.root", self.data.root), ("data.vllm_cache", self.data.vllm_cache),
                           ("model.vae", self.model.vae), ("model.vllm", self.model.vllm)):
            if path and not os.path.exists(path):
                raise ConfigError(f"{name}: {path} does not exist")
        if self.model.init != "tiny" and not os.path.isdir(self.model.init):
            raise ConfigError(f"model.init: {self.model.init} is neither 'tiny' nor a model directory")


def parse_config(data: dict) -> TrainConfig:
    return validate_config(TrainConfig, data)


def load_config(path: str, overrides: dict | None = None) -> TrainConfig:
    return load_yaml_config(TrainConfig, path, overrides,
                            expected="a mapping of sections (data, model, optim, dropout, log)")
