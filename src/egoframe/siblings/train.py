"""Training SmartEdit, MGIE and ReasonPix2Pix on a curated pair set (the embedded world by default).

One loop for the three systems; what differs is which parts train and which losses are summed:

- SmartEdit stage 1 (papers/002 Sec. 3.3): LLM (LoRA) + QFormer; CE on the answer and the <img_i> tokens +
  MSE between the QFormer output f and the frozen CLIP text encoder's states of the description.
- SmartEdit stage 2: LoRA r 8, α 16 on the LLM's q/v + connector + UNet; CE + diffusion MSE, 1:1.
- MGIE (Fu et al. 2024, Eq. 3-5): LoRA LLM + edit head + UNet; CE + 0.5·MSE(edit head, CLIP(description)) +
  diffusion MSE.
- ReasonPix2Pix (papers/003 Sec. 3.3): LLaVA frozen; connector + UNet; diffusion MSE with InstructPix2Pix's
  settings (classifier-free dropout of text and image, 5 % each, as LEGO).

Reused from egoframe.training: PairSource (data), batch_indices (seeded order); from egoframe.engine the loop,
checkpoints and Ema; the tiny 8-channel UNet,
VAE and CLIP text encoder from models.tiny; the LLaVA from egoframe.vllm (tiny, or load_vllm).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from egoframe.diffusion import cfg_dropout, diffusion_target, encode_image_latents
from egoframe.engine import (
    Checkpoints,
    Ema,
    LossLog,
    ModuleState,
    TrainableState,
    TrainState,
    check_resumable,
    run_steps,
)
from egoframe.errors import ConfigError
from egoframe.models.autoencoder import downsampling_factor, load_autoencoder
from egoframe.models.text import encode_text
from egoframe.models.tiny import TinyConfig, tiny_components
from egoframe.pipelines.loading import from_stable_diffusion
from egoframe.siblings import llm
from egoframe.siblings.connectors import connector_class, conv_in_residual, load_bert_into_qformer
from egoframe.siblings.pipeline import SiblingPipeline, connector_condition, frames_uint8
from egoframe.training.data import PairSource, batch_indices
from egoframe.utils.checkpoint import atomic_write_json
from egoframe.utils.config import StrictModel, load_yaml_config
from egoframe.utils.progress import ProgressBar
from egoframe.utils.safe_loading import weights_kwargs
from egoframe.vllm.model import load_vllm
from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer

logger = logging.getLogger(__name__)

LOSSES = "losses.jsonl"
CHECKPOINTS = "checkpoints"  # as LEGO's trainer: OUT/checkpoints/step-N
CONFIG_FILE = "sibling_train_config.json"

# (ce, mse, diffusion) weights of each system's loss, from the papers (see the module docstring).
DEFAULT_WEIGHTS = {
    ("smartedit", 1): (1.0, 1.0, 0.0),
    ("smartedit", 2): (1.0, 0.0, 1.0),
    ("mgie", 2): (1.0, 0.5, 1.0),
    ("rp2p", 2): (0.0, 0.0, 1.0),
}


class SiblingTrainConfig(StrictModel):
    system: Literal["smartedit", "mgie", "rp2p"]
    stage: Literal[1, 2] = 2  # 1 exists for SmartEdit only (LLM-CLIP alignment)
    root: str  # curated pairs (pairs.parquet), e.g. the embedded world after `egoframe data curate`
    split: str = "train"
    resolution: int = Field(32, ge=8)
    out_dir: str
    llm: str = "tiny"  # "tiny" (built in code) or a llava-hf directory (load_vllm)
    # "tiny": the embedded-size UNet / VAE / CLIP built in code; otherwise a Stable Diffusion 1.5 directory
    # (diffusers layout) whose UNet is grown to 8 input channels, as LEGO's (pipelines.loading)
    init: str = "tiny"
    tiny: dict = Field(default_factory=dict)  # TinyConfig overrides (UNet/VAE/CLIP sizes)
    vae: str | None = None  # a trained VAE directory (`egoframe vae train`); None: the tiny random one
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    tiny_llm: dict = Field(default_factory=dict)  # TinyVllmConfig overrides
    connector: dict = Field(default_factory=dict)  # connector kwargs; sizes that must fit the parts are derived
    init_from: str | None = None  # a stage-1 output (SmartEdit): its connector/ and llm/ are loaded
    bert: str | None = None  # a BERT-base directory (HF layout) to initialise SmartEdit's QFormer
    answer: Literal["description", "none"] = "description"  # what the LLM writes before the edit tokens
    lora: bool = True
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    ce_weight: float | None = None  # None: the paper's weight for (system, stage)
    mse_weight: float | None = None
    diffusion_weight: float | None = None
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    max_steps: int = Field(20, ge=1)
    ema_decay: float = Field(0.9999, ge=0, lt=1)
    drop_text: float = Field(0.05, ge=0, le=1)
    drop_image: float = Field(0.05, ge=0, le=1)
    drop_both: float = Field(0.05, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)
    checkpoint_every: int = Field(50, ge=0)  # steps between resumable checkpoints; 0: none
    keep_checkpoints: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self):
        if self.stage == 1 and self.system != "smartedit":
            raise ValueError("stage 1 (LLM-CLIP alignment) exists for system 'smartedit' only")
        if self.drop_text + self.drop_image + self.drop_both > 1:
            raise ValueError("drop_text + drop_image + drop_both must be at most 1")
        return self

    def weights(self) -> tuple[float, float, float]:
        ce, mse, diffusion = DEFAULT_WEIGHTS[(self.system, self.stage)]
        pick = lambda given, default: default if given is None else given  # noqa: E731
        return pick(self.ce_weight, ce), pick(self.mse_weight, mse), pick(self.diffusion_weight, diffusion)


def load_train_config(path: str, overrides: dict | None = None) -> SiblingTrainConfig:
    return load_yaml_config(SiblingTrainConfig, path, overrides)


@dataclass
class SiblingTrainResult:
    steps: int
    final_loss: float
    seconds: float
    out_dir: str  # the model (stage 2) or the stage-1 connector + LLM


# ----------------------------------------------------------------------------------- building


def _build_llm(config: SiblingTrainConfig, source):
    if config.init_from:
        vllm = load_vllm(os.path.join(config.init_from, "llm"))
    elif config.llm == "tiny":
        texts = [t for i in range(len(source)) for t in (*source.texts(i), _instruction(source, i))]
        tiny = TinyVllmConfig(**{"image_size": config.resolution, "patch_size": max(1, config.resolution // 4),
                                 "vision_hidden_size": 16, "vision_layers": 2, "vision_heads": 2,
                                 "text_hidden_size": 16, "text_layers": 1, "text_heads": 2, **config.tiny_llm})
        vllm = build_tiny_vllm(build_word_tokenizer(texts), tiny, seed=config.seed)
    else:
        vllm = load_vllm(config.llm)
    edit_ids: list[int] = []
    if config.system != "rp2p":
        edit_ids = llm.add_edit_tokens(vllm, llm.edit_token_names(config.system, _num_llm_tokens(config)))
    return vllm, edit_ids


def _num_llm_tokens(config: SiblingTrainConfig) -> int:
    """Added LLM tokens: the papers' 32 (SmartEdit) / 8 (MGIE); 4 for the tiny LLM unless configured."""
    if config.init_from:
        with open(os.path.join(config.init_from, "connector", "config.json")) as fh:
            return int(json.load(fh)["num_llm_tokens"])
    default = 4 if config.llm == "tiny" else (32 if config.system == "smartedit" else 8)
    return int(config.connector.get("num_llm_tokens", default))


def _build_connector(config: SiblingTrainConfig, vllm, unet, latent_grid: int):
    cls = connector_class(config.system)
    if config.init_from:
        folder = os.path.join(config.init_from, "connector")
        return cls.from_pretrained(folder, **weights_kwargs(folder))
    kwargs = dict(d_llm=vllm.d_llm, cross_attention_dim=unet.config.cross_attention_dim)
    if config.system != "rp2p":
        kwargs["num_llm_tokens"] = _num_llm_tokens(config)
    if config.system == "smartedit":
        vision = vllm.model.config.vision_config
        kwargs.update(vision_dim=vision.hidden_size, vision_grid=vision.image_size // vision.patch_size,
                      conv_in_channels=unet.config.block_out_channels[0], latent_grid=latent_grid)
        if config.llm == "tiny":  # sizes for a 16-d LLM; a real run keeps the published 768/1024 defaults
            kwargs.update(qformer_hidden_size=32, qformer_layers=2, qformer_heads=4,
                          qformer_intermediate_size=64, bim_dim=32, bim_heads=4, bim_mlp_dim=64)
    elif config.system == "mgie" and config.llm == "tiny":
        kwargs.update(hidden_size=32, encoder_layers=1, decoder_layers=1, heads=4, feedforward=64)
    kwargs.update(config.connector)
    connector = cls(**kwargs)
    if config.bert:
        if config.system != "smartedit":
            raise ConfigError("bert initialises SmartEdit's QFormer; this system has none")
        load_bert_into_qformer(connector, config.bert)
    return connector


def _instruction(source, index: int) -> str:
    """The edit instruction of a pair: a reasoning instruction when the record carries one, else the label."""
    rec = source.records[index]
    return str(rec.extra.get("instruction") or rec.action)


# ----------------------------------------------------------------------------------- the loop


def train_sibling(config: SiblingTrainConfig, progress: bool = True, resume: bool = False) -> SiblingTrainResult:
    """Train one system and export it (stage 2: a SiblingPipeline in ``out_dir/model``; SmartEdit stage 1:
    ``out_dir/stage1`` with connector/ and llm/ for ``init_from``).

    Every ``checkpoint_every`` steps the trainable state (connector, UNet, the LLM's trainable parameters
    such as LoRA and added-token rows, EMA, optimizer, RNG) is written atomically as safetensors under
    ``out_dir/checkpoints``; ``resume=True`` continues from the latest one. Batches and noise are functions of
    (seed, step), so a resumed run computes the same losses as an uninterrupted one.
    """
    from diffusers import DDPMScheduler

    saver = Checkpoints(os.path.join(config.out_dir, CHECKPOINTS), keep=config.keep_checkpoints)
    checkpoint = saver.latest() if resume else None
    if not checkpoint and os.path.exists(os.path.join(config.out_dir, LOSSES)):
        hint = "it has no checkpoint to resume from" if resume else "pass --resume to continue it"
        raise ConfigError(f"{config.out_dir} already holds a run ({hint}); or use another out_dir")
    if checkpoint:
        with open(os.path.join(config.out_dir, CONFIG_FILE)) as fh:
            check_resumable(json.load(fh), config.model_dump(mode="json"), config.out_dir,
                            free=("max_steps", "checkpoint_every", "keep_checkpoints"))
    os.makedirs(config.out_dir, exist_ok=True)
    atomic_write_json(os.path.join(config.out_dir, CONFIG_FILE), config.model_dump(mode="json"))
    torch.manual_seed(config.seed)
    source = PairSource(config.root, config.split, config.resolution)
    if config.init == "tiny":
        tiny = TinyConfig(**{"resolution": config.resolution, "vae_channels": (16, 32), "unet_channels": (16, 32),
                             "cross_attention_dim": 32, "attention_head_dim": 8, **config.tiny})
        parts = tiny_components(tiny, ablation="descriptions", seed=config.seed)
    else:
        if not os.path.isdir(config.init):
            raise ConfigError(f"init: {config.init} is neither 'tiny' nor a Stable Diffusion directory")
        sd = from_stable_diffusion(config.init)
        parts = {name: getattr(sd, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    parts.pop("conditioning", None)  # LEGO's; the connector takes its place
    if config.vae:
        if not os.path.isfile(os.path.join(config.vae, "config.json")):
            raise ConfigError(f"vae: {config.vae} is not a VAE directory (made by `egoframe vae train`)")
        parts["vae"] = load_autoencoder(config.vae)
    if config.prediction_type != parts["scheduler"].config.get("prediction_type", "epsilon"):
        parts["scheduler"] = type(parts["scheduler"]).from_config(parts["scheduler"].config,
                                                                  prediction_type=config.prediction_type)
    vae, text_encoder, unet = parts["vae"], parts["text_encoder"], parts["unet"]
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    vae_factor = downsampling_factor(vae)
    vllm, edit_ids = _build_llm(config, source)
    connector = _build_connector(config, vllm, unet, config.resolution // vae_factor)
    ce_w, mse_w, diff_w = config.weights()

    vllm.model.requires_grad_(False)
    llm_model = vllm.model
    if config.system != "rp2p" and ce_w > 0 or config.stage == 1:
        if config.lora:
            llm_model = llm.apply_lora(vllm, config.lora_r, config.lora_alpha, edit_ids)
        else:
            vllm.model.requires_grad_(True)
    train_unet = diff_w > 0
    unet.requires_grad_(train_unet)
    unet.train(train_unet)
    connector.train()
    trained = nn.ModuleDict({"connector": connector, "unet": unet})  # what EMA tracks and export saves
    params = [p for p in trained.parameters() if p.requires_grad] + \
             [p for p in llm_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    ema = Ema(trained, config.ema_decay)
    noise_scheduler = DDPMScheduler.from_config(parts["scheduler"].config)
    scaling = vae.config.scaling_factor

    with torch.no_grad():
        null_state = encode_text(parts["tokenizer"], text_encoder, [""])[0]  # ψ(""), (77, D)
    state = TrainState(tensors={"model": ModuleState(trained), "llm": TrainableState(llm_model), "ema": ema},
                       optimizer=optimizer)
    losses = LossLog(os.path.join(config.out_dir, LOSSES))
    first = 0
    if checkpoint:
        first = saver.load(checkpoint, state)["step"]
        logger.info("resumed %s at step %d", config.out_dir, first)
    losses.resume(first)
    weights = {"ce": ce_w, "mse": mse_w, "diffusion": diff_w}

    def step_fn(step: int):
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        idx = batch_indices(len(source), step, config.batch_size, config.seed)
        pairs = [source.images(i) for i in idx]
        inputs, targets = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        instructions = [_instruction(source, i) for i in idx]
        descriptions = [source.texts(i)[1] for i in idx]
        answers = descriptions if config.answer == "description" else [""] * len(idx)
        frames = frames_uint8(inputs)
        terms: dict[str, torch.Tensor] = {}
        if config.stage == 1:
            batch = llm.edit_token_batch(vllm, frames, instructions, answers, edit_ids)
            ce, token_states = llm.edit_token_forward(vllm, llm_model, batch, edit_ids)
            with torch.no_grad():
                clip = encode_text(parts["tokenizer"], text_encoder, descriptions)
            terms["ce"] = ce
            terms["mse"] = nn.functional.mse_loss(connector.qformer_states(token_states), clip)
        else:
            cond, ce, _ = connector_condition(connector, vllm, llm_model, frames, instructions, answers, edit_ids)
            if ce is not None and ce_w > 0:
                terms["ce"] = ce
            if mse_w > 0:
                with torch.no_grad():
                    clip = encode_text(parts["tokenizer"], text_encoder, descriptions)
                terms["mse"] = nn.functional.mse_loss(cond.states, clip)
            terms["diffusion"] = _diffusion_loss(config, cond, null_state, vae, unet, noise_scheduler, inputs,
                                                 targets, g, scaling, conv_in_residual)
        loss = sum(weights[k] * v for k, v in terms.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        ema.update(trained, step)
        return float(loss.detach()), {k: float(v.detach()) for k, v in terms.items()}

    start = time.time()
    with ProgressBar(progress, config.system, config.max_steps, first, fields={"loss": "-"}) as bar:
        loss_value = run_steps(step_fn, first, config.max_steps, bar=bar, log=losses, advice="lower lr",
                               checkpoint=lambda done: saver.save(done, state),
                               checkpoint_every=config.checkpoint_every)

    ema.copy_to(trained)
    if llm_model is not vllm.model:
        llm.merge_lora(vllm, llm_model)
    if config.stage == 1:
        out = os.path.join(config.out_dir, "stage1")
        connector.save_pretrained(os.path.join(out, "connector"))
        vllm.save_pretrained(os.path.join(out, "llm"))
    else:
        out = os.path.join(config.out_dir, "model")
        connector.eval()
        unet.eval()
        pipe = SiblingPipeline(connector=connector, **parts)
        pipe.attach_vllm(vllm, generate_answers=config.answer == "description" and config.system != "rp2p")
        pipe.save_pretrained(out)
    return SiblingTrainResult(steps=config.max_steps, final_loss=loss_value, seconds=time.time() - start,
                              out_dir=out)


def _diffusion_loss(config, cond, null_state, vae, unet, noise_scheduler, inputs, targets, g, scaling,
                    conv_in_residual) -> torch.Tensor:
    """ε-prediction MSE with InstructPix2Pix's classifier-free dropout (text / image / both)."""
    b = inputs.shape[0]
    with torch.no_grad():
        image_latents = encode_image_latents(vae, inputs)  # (B, 4, h, w), mode, unscaled (as IP2P)
        posterior = vae.encode(targets).latent_dist
        z0 = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)) * scaling
    noise = torch.randn(z0.shape, generator=g)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b,), generator=g)
    u = torch.rand(b, generator=g)
    drop_text, drop_image = cfg_dropout(u, config.drop_text, config.drop_both, config.drop_image)
    states = torch.where(drop_text[:, None, None], null_state.expand_as(cond.states), cond.states)
    mask = None
    if cond.mask is not None:
        mask = torch.where(drop_text[:, None], torch.ones_like(cond.mask), cond.mask)
    residual = cond.conv_in_residual
    if residual is not None:  # v' is part of the text condition: dropped with it (the null branch has none)
        residual = residual * (~drop_text).to(residual.dtype)[:, None, None, None]
    image_latents = image_latents * (~drop_image)[:, None, None, None]
    noisy = noise_scheduler.add_noise(z0, noise, t)
    # v-prediction (Salimans & Ho, ICLR 2022): the tiny models drift colours with epsilon (docs/embedded)
    target = diffusion_target(noise_scheduler, z0, noise, t, config.prediction_type)
    with conv_in_residual(unet, residual):
        pred = unet(torch.cat([noisy, image_latents], dim=1), t, encoder_hidden_states=states,
                    encoder_attention_mask=mask).sample
    return nn.functional.mse_loss(pred, target)


# ----------------------------------------------------------------------------------- checkpoints

def latest_sibling_checkpoint(out_dir: str) -> str | None:
    """The newest finished ``OUT/checkpoints/step-N`` (the shared engine's layout, as LEGO's trainer)."""
    return Checkpoints(os.path.join(out_dir, CHECKPOINTS)).latest()


def read_losses(out_dir: str) -> list[dict]:
    return LossLog.read(os.path.join(out_dir, LOSSES))
