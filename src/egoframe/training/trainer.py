"""`egoframe train`: LEGO's diffusion training loop, from one CPU to many GPUs (HF accelerate).

Loss (LEGO Sec. 3.3, InstructPix2Pix Sec. 3.2): ε-prediction (or v-prediction) MSE of the 8-channel
UNet on concat(noisy target latent, input-frame latent), conditioned on C = [ψ(R); σ(H_i); π(μ(H_t))].
Classifier-free dropout per sample (LEGO supp. F.4): text only (the VLLM embeddings go with it), image
only, or both. The trained parameters are the UNet's AND the conditioning module's σ, μ, π: the public
code built them but never handed them to its optimizer.

Exact resume: batches, noise, timesteps, dropout masks and augmentation are pure functions of
(seed, micro-step, rank), so a run resumed from a checkpoint computes the same losses as one that was
never interrupted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass

import torch
from torch import nn

from egoframe.data.records import RECORDS_FILE
from egoframe.diffusion import cfg_dropout, diffusion_target, encode_image_latents
from egoframe.engine import Checkpoints, Ema, LossLog, ModuleState, TrainState, check_resumable, run_steps
from egoframe.errors import ConfigError
from egoframe.models.text import encode_text
from egoframe.models.tiny import TinyConfig, tiny_components
from egoframe.pipelines.loading import check_consistency, load_pipeline
from egoframe.training.config import TrainConfig
from egoframe.training.data import PairSource, augment, batch_indices
from egoframe.utils.checkpoint import atomic_write_json
from egoframe.utils.progress import ProgressBar
from egoframe.vllm.model import load_vllm

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LOSSES = "losses.jsonl"
CONFIG_FILE = "train_config.json"


class LegoDenoiser(nn.Module):
    """The trained parts in one module (so DDP wraps them together): conditioning + UNet."""

    def __init__(self, unet, conditioning, channels_last: bool = False):
        super().__init__()
        self.unet = unet
        self.conditioning = conditioning
        self.channels_last = channels_last  # feed the UNet NHWC inputs (its weights were converted)

    def forward(self, noisy_latents, image_latents, timesteps, text_states, vllm_image_tokens=None,
                vllm_text_tokens=None, vllm_text_mask=None, drop_vllm=None):
        cond, mask = self.conditioning(text_states, vllm_image_tokens, vllm_text_tokens, vllm_text_mask,
                                       drop_vllm=drop_vllm if self.conditioning.needs_vllm else None)
        # image_latents None: the text-to-image UNet (mode t2i) sees the noisy latent only, (B, 4, h, w)
        model_in = noisy_latents if image_latents is None else torch.cat([noisy_latents, image_latents], dim=1)  # (B, 8, h, w)
        if self.channels_last:
            model_in = model_in.contiguous(memory_format=torch.channels_last)
        return self.unet(model_in, timesteps, encoder_hidden_states=cond, encoder_attention_mask=mask).sample


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    model_dir: str
    resumed_from: int


# ----------------------------------------------------------------------------------- model building


def build_pipeline(config: TrainConfig, cache=None):
    """The pipeline to train, from the tiny architecture, a Stable Diffusion dir or an egoframe dir."""
    from egoframe.models.autoencoder import load_autoencoder  # lazy: pulls diffusers
    from egoframe.models.conditioning import ABLATIONS, LegoConditioningConfig  # lazy: pulls diffusers
    from egoframe.pipelines.lego import LegoPipeline  # lazy: pulls diffusers

    vllm_sizes = {}
    if cache is not None:
        vllm_sizes = dict(d_llm=cache.d_llm, num_image_tokens=cache.n_image_tokens, num_text_tokens=cache.n_text_tokens)
    m = config.model
    if m.init == "tiny":
        fields = TinyConfig.__dataclass_fields__
        unknown = set(m.tiny) - set(fields)
        if unknown:
            raise ConfigError(f"model.tiny: unknown key {sorted(unknown)[0]!r}")
        tiny_kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in m.tiny.items()}
        tiny = TinyConfig(**{**tiny_kwargs, "resolution": config.data.resolution})
        tiny.conditioning = {**tiny.conditioning, **vllm_sizes}
        vae = load_autoencoder(m.vae) if m.vae else None  # the UNet's channels follow a given autoencoder
        parts = tiny_components(tiny, ablation=m.ablation, seed=config.seed, vae=vae, use_text_mask=m.use_text_mask)
        pipe = LegoPipeline(**parts)
    else:
        cond = LegoConditioningConfig(**{**ABLATIONS[m.ablation], **vllm_sizes, "use_text_mask": m.use_text_mask})
        pipe = load_pipeline(m.init, conditioning=cond)
        have = pipe.conditioning.config
        want = ABLATIONS[m.ablation]
        if any(have[k] != v for k, v in want.items()):
            raise ConfigError(f"model.init {m.init} was trained as another variant than ablation {m.ablation!r}")
    if m.mode == "t2i":
        pipe = _text_to_image(pipe)
    if m.prediction_type != pipe.scheduler.config.get("prediction_type", "epsilon"):
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=m.prediction_type)
    check_consistency(pipe, m.init)
    if pipe.resolution != config.data.resolution:
        raise ConfigError(f"data.resolution {config.data.resolution} != the model's {pipe.resolution} px")
    return pipe


def _text_to_image(pipe):
    """The same parts with a 4-channel UNet: SDEdit's text-to-image model (LEGO Table 1 baselines).

    The 8-channel UNet is rebuilt with 4 input channels keeping conv_in's first 4 channels (those that act
    on the noisy latent). For a Stable Diffusion init this recovers its original text-to-image conv_in
    exactly (``grow_conv_in`` copied it there and zeroed the image channels); for the tiny init it keeps
    the seeded weights.
    """
    from diffusers import UNet2DConditionModel

    from egoframe.pipelines.baselines import SDEditPipeline  # lazy: pulls diffusers

    unet = pipe.unet
    if unet.config.in_channels != 4:
        state = unet.state_dict()
        state["conv_in.weight"] = state["conv_in.weight"][:, :4].clone()
        unet = UNet2DConditionModel.from_config({**unet.config, "in_channels": 4})
        unet.load_state_dict(state)
    return SDEditPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet,
                          scheduler=pipe.scheduler, conditioning=pipe.conditioning)


# ----------------------------------------------------------------------------------- checkpoints


def checkpoints(out_dir: str, keep: int = 2) -> Checkpoints:
    """The run's checkpoints, ``out_dir/checkpoints/step-N`` (the shared engine's layout)."""
    return Checkpoints(os.path.join(out_dir, CHECKPOINTS), keep=keep)


def latest_checkpoint(out_dir: str) -> str | None:
    return checkpoints(out_dir).latest()


def lr_factor(optim, step: int) -> float:
    """The learning-rate multiplier at optimizer step `step`: linear warm-up, then constant (LEGO) or, from
    optim.decay_start, a half cosine down to optim.final_lr_ratio at optim.max_steps."""
    factor = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
    start = optim.decay_start
    if start is not None and step >= start and optim.max_steps > start:
        progress = min(1.0, (step - start) / (optim.max_steps - start))
        floor = optim.final_lr_ratio
        factor *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def resume_from(path: str, state: TrainState, config: TrainConfig) -> int:
    """Load the checkpoint at ``path`` into ``state`` after checking the run's settings allow it; the step."""
    check_resumable(Checkpoints.record(path)["config"], config.model_dump(mode="json"), path,
                    only=("data", "model", "dropout", "seed"))
    return int(checkpoints(config.log.out_dir).load(path, state)["step"])


# ----------------------------------------------------------------------------------- the loop


class _Frozen:
    """VAE latents and CLIP text states of the frozen parts, computed once per item when allowed."""

    def __init__(self, pipe, source, precompute: bool, workers: int = 0):
        from concurrent.futures import ThreadPoolExecutor

        self.pipe, self.source, self.precompute = pipe, source, precompute
        self.latents: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.text: dict[str, torch.Tensor] = {}
        # Frames are a pure function of the index, so decoding them ahead in threads changes no result.
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="egoframe-decode") if workers and not precompute else None
        self.pending: dict[tuple[int, ...], list] = {}

    def prefetch(self, indices: list[int]) -> None:
        if self.pool is not None and tuple(indices) not in self.pending:
            self.pending[tuple(indices)] = [self.pool.submit(self.source.images, i) for i in indices]

    def _pairs(self, indices: list[int]) -> list:
        futures = self.pending.pop(tuple(indices), None)
        if futures is None:
            return [self.source.images(i) for i in indices]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pending.clear()

    @torch.no_grad()
    def text_states(self, texts: list[str]) -> torch.Tensor:
        todo = [t for t in dict.fromkeys(texts) if t not in self.text]
        if todo:
            states = encode_text(self.pipe.tokenizer, self.pipe.text_encoder, todo)
            for t, s in zip(todo, states):
                self.text[t] = s
        return torch.stack([self.text[t] for t in texts])

    @torch.no_grad()
    def encode(self, pixels_in: torch.Tensor, pixels_tg: torch.Tensor):

        image_latents = encode_image_latents(self.pipe.vae, pixels_in)  # (B, 4, h, w), mode, unscaled
        posterior = self.pipe.vae.encode(pixels_tg.to(self.pipe.vae.device)).latent_dist
        return image_latents, posterior.mean, posterior.std

    @torch.no_grad()
    def prepare(self, use_label: bool, chunk: int = 32, cache_file: str | None = None, key: str = "") -> None:
        """Encode every item and text once, in index order and fixed chunks.

        Doing it up front (not lazily per batch) keeps each item's latent independent of which items
        happened to share its encoder batch, so a resumed run sees bit-identical inputs. With
        ``cache_file`` the latents are saved there (safetensors) with ``key`` (what they were made from), and a
        resumed run whose key matches loads them instead of decoding and encoding every frame again
        (minutes for tens of thousands of pairs on a CPU).
        """
        texts = sorted({self.source.texts(i)[0 if use_label else 1] for i in range(len(self.source))} | {""})
        for start in range(0, len(texts), 64):
            self.text_states(texts[start:start + 64])
        if not self.precompute:
            return
        if cache_file and self._load(cache_file, key):
            return
        for start in range(0, len(self.source), chunk):
            todo = list(range(start, min(start + chunk, len(self.source))))
            pairs = [self.source.images(i) for i in todo]
            enc = self.encode(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
            for k, i in enumerate(todo):
                self.latents[i] = tuple(e[k].cpu() for e in enc)
        if cache_file:
            self._save(cache_file, key)

    def _save(self, path: str, key: str) -> None:
        from safetensors.torch import save_file

        n = len(self.source)
        tensors = {name: torch.stack([self.latents[i][j] for i in range(n)]).contiguous()
                   for j, name in enumerate(LATENT_PARTS)}
        tmp = f"{path}.tmp-{os.getpid()}"
        save_file(tensors, tmp, metadata={"key": key})
        os.replace(tmp, path)

    def _load(self, path: str, key: str) -> bool:
        from safetensors import safe_open

        if not os.path.isfile(path):
            return False
        try:
            with safe_open(path, framework="pt") as fh:
                if (fh.metadata() or {}).get("key") != key:
                    logger.info("latent cache %s was made from other data or another VAE: encoding again", path)
                    return False
                parts = [fh.get_tensor(name) for name in LATENT_PARTS]
        except Exception as err:  # a torn or foreign file: encode again, it is only a cache
            logger.warning("latent cache %s unreadable (%s): encoding again", path, err)
            return False
        if any(p.shape[0] != len(self.source) for p in parts):
            return False
        for i in range(len(self.source)):
            self.latents[i] = tuple(p[i] for p in parts)
        logger.info("loaded %d items' latents from %s", len(self.source), path)
        return True


    def batch(self, indices: list[int], generator: torch.Generator, flip: bool, crop_scale: float):
        if self.precompute:
            parts = [self.latents[i] for i in indices]
            return tuple(torch.stack([p[j] for p in parts]) for j in range(3))
        pairs = self._pairs(indices)
        x_in, x_tg = augment(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]),
                             generator, flip, crop_scale)
        return tuple(e.cpu() for e in self.encode(x_in, x_tg))


LATENT_PARTS = ("image_latents", "target_mean", "target_std")
LATENT_CACHE = "latents.safetensors"


def latent_cache_key(config: "TrainConfig", pipe, n_items: int) -> str:
    """What a run's latents are a function of: the data set (its pairs file), the frame size, the items and
    the VAE's weights (a checksum of its parameters)."""
    import hashlib

    records = os.path.join(config.data.root, RECORDS_FILE)
    stat = os.stat(records) if os.path.exists(records) else None
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in sorted(pipe.vae.state_dict().items()):
            digest.update(name.encode())
            digest.update(f"{float(param.double().sum()):.10e}".encode())
    return json.dumps({"root": os.path.abspath(config.data.root), "resolution": config.data.resolution,
                       "items": n_items, "records": [stat.st_size, stat.st_mtime_ns] if stat else None,
                       "vae": digest.hexdigest()[:16]}, sort_keys=True)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) and export the EMA model to ``<out_dir>/model``; returns what was done."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

    config.check_paths()
    out_dir = config.log.out_dir
    if not resume and latest_checkpoint(out_dir):
        raise ConfigError(f"{out_dir} already holds checkpoints: pass --resume to continue, or use another out_dir")
    accelerator = Accelerator(mixed_precision=config.optim.mixed_precision,
                              cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(config.seed)

    source = PairSource(config.data.root, config.data.split, config.data.resolution, config.data.vllm_cache,
                        need_vllm=config.needs_vllm, need_descriptions=config.needs_descriptions)
    pipe = build_pipeline(config, source.cache)
    device = accelerator.device
    pipe.vae.requires_grad_(False).eval().to(device)
    pipe.text_encoder.requires_grad_(False).eval().to(device)
    if config.optim.channels_last:  # before the optimizer and EMA, so their state tensors share the layout
        pipe.unet.to(memory_format=torch.channels_last)
    denoiser = LegoDenoiser(pipe.unet, pipe.conditioning, channels_last=config.optim.channels_last).to(device)
    denoiser.train()
    if config.optim.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    if config.optim.compile:
        pipe.unet.compile()  # nn.Module.compile: in place, state_dict keys unchanged
    trainable = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = _optimizer(config, trainable)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config.optim, s))
    ema = Ema(denoiser, config.optim.ema_decay)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    state = TrainState(tensors={"model": ModuleState(denoiser), "ema": ema}, optimizer=optimizer,
                       scheduler=lr_scheduler)
    saver = checkpoints(out_dir, keep=config.log.keep_checkpoints)
    start_step = 0
    ckpt = saver.latest() if resume else None
    if ckpt:
        start_step = resume_from(ckpt, state, config)
        logger.info("resumed from %s (step %d)", ckpt, start_step)
    losses = LossLog(os.path.join(out_dir, LOSSES) if accelerator.is_main_process else None)
    if accelerator.is_main_process:
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_json(os.path.join(out_dir, CONFIG_FILE), config.model_dump(mode="json"))
        losses.resume(start_step)
    denoiser, optimizer = accelerator.prepare(denoiser, optimizer)

    frozen = _Frozen(pipe, source, precompute=config.data.precompute and not config.data.flip
                     and config.data.crop_scale >= 1.0, workers=config.data.num_workers)
    use_label = pipe.conditioning.config.text_source == "label"
    frozen.prepare(use_label, cache_file=os.path.join(out_dir, LATENT_CACHE) if accelerator.is_main_process
                   and accelerator.num_processes == 1 else None,
                   key=latent_cache_key(config, pipe, len(source)))
    null_state = frozen.text_states([""])[0]
    scaling = pipe.vae.config.scaling_factor
    d = config.dropout
    t2i = config.model.mode == "t2i"
    writer = _tensorboard(config, accelerator)

    def micro_loss(micro: int) -> torch.Tensor:
        """The loss of micro-batch ``micro``: every draw is a function of (seed, micro, rank)."""
        g = torch.Generator().manual_seed(_mix(config.seed, micro, rank))
        idx = batch_indices(len(source), micro, config.optim.batch_size, config.seed, rank, world)
        if micro + 1 < config.optim.max_steps * config.optim.grad_accum:  # decode the next batch meanwhile
            frozen.prefetch(batch_indices(len(source), micro + 1, config.optim.batch_size, config.seed, rank, world))
        image_latents, mean, std = frozen.batch(idx, g, config.data.flip, config.data.crop_scale)
        clean_latents = image_latents  # before classifier-free dropout zeroes some of them
        b = len(idx)
        z0 = (mean + std * torch.randn(mean.shape, generator=g)) * scaling  # (B, 4, h, w)
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b,), generator=g)
        u = torch.rand(b, generator=g)
        drop_text, drop_image = cfg_dropout(u, d.text, d.both, d.image)
        texts = [source.texts(i)[0 if use_label else 1] for i in idx]
        states = frozen.text_states(texts)
        states = torch.where(drop_text[:, None, None], null_state.expand_as(states), states)
        image_latents = image_latents * (~drop_image)[:, None, None, None]
        if t2i:
            # Same random draws as the edit mode (exact resume unchanged); only text is dropped
            # (text or both: the unconditional branch of ordinary classifier-free guidance).
            image_latents = None
        vllm = source.vllm(idx)
        noisy = noise_scheduler.add_noise(z0, noise, t)
        target = diffusion_target(noise_scheduler, z0, noise, t, config.model.prediction_type)
        with accelerator.autocast():
            pred = denoiser(
                noisy.to(device), None if image_latents is None else image_latents.to(device), t.to(device),
                states.to(device),
                vllm_image_tokens=None if vllm is None else vllm.image_tokens.to(device),
                vllm_text_tokens=None if vllm is None else vllm.text_tokens.to(device),
                vllm_text_mask=None if vllm is None else vllm.text_mask.to(device),
                drop_vllm=drop_text.to(device),
            )
        err = (pred.float() - target.to(device).float()) ** 2
        if config.optim.change_weight > 0:
            err = err * change_weights(mean, clean_latents, config.optim.change_weight, scaling).to(device)
        return err.mean() / config.optim.grad_accum

    def step_fn(step: int) -> float:
        total = 0.0
        for k in range(config.optim.grad_accum):
            loss = micro_loss(step * config.optim.grad_accum + k)
            if world > 1 and k < config.optim.grad_accum - 1:
                with accelerator.no_sync(denoiser):
                    accelerator.backward(loss)
            else:
                accelerator.backward(loss)
            total += float(loss.detach())
        if config.optim.grad_clip > 0:
            accelerator.clip_grad_norm_(denoiser.parameters(), config.optim.grad_clip)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(accelerator.unwrap_model(denoiser), step)
        return float(accelerator.reduce(torch.tensor(total, device=device), reduction="mean"))

    def after_step(done: int, loss: float) -> None:
        if writer and done % config.log.log_every == 0:
            writer.add_scalar("train/loss", loss, done)
        if config.log.sample_every and done % config.log.sample_every == 0 and accelerator.is_main_process:
            _sample_grid(pipe, ema, accelerator.unwrap_model(denoiser), config, f"step-{done:08d}")

    def save(done: int) -> None:
        if accelerator.is_main_process:
            saver.save(done, state, config=config.model_dump(mode="json"))
        accelerator.wait_for_everyone()

    bar = ProgressBar(progress and accelerator.is_main_process, "train", config.optim.max_steps, start_step,
                      fields={"loss": "-", "it/s": "-"}).start()
    start_time = time.time()
    try:
        loss_value = run_steps(step_fn, start_step, config.optim.max_steps, bar=bar, log=losses, after_step=after_step,
                               checkpoint=save, checkpoint_every=config.log.checkpoint_every,
                               checkpoint_at_end=True, advice="lower optim.lr")
    finally:
        frozen.close()
        bar.close()
    seconds = time.time() - start_time
    if world > 1:
        _record_digests(accelerator, denoiser, out_dir)
    model_dir = os.path.join(out_dir, "model")
    if accelerator.is_main_process:
        model_dir = export_model(pipe, ema, accelerator.unwrap_model(denoiser), config)
        if config.log.num_samples:
            _sample_grid(pipe, ema, accelerator.unwrap_model(denoiser), config, "final")
    accelerator.wait_for_everyone()
    return TrainResult(steps=config.optim.max_steps - start_step, final_loss=loss_value, seconds=seconds,
                       model_dir=model_dir, resumed_from=start_step)


def export_model(pipe, ema, denoiser, config: TrainConfig) -> str:
    """Save the EMA weights as a complete egoframe model directory (with its VLLM, when given)."""
    model_dir = os.path.join(config.log.out_dir, "model")
    tmp = f"{model_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.sampling_defaults = {"num_inference_steps": config.log.sample_steps,
                              "image_guidance_scale": config.log.sample_image_scale,
                              "guidance_scale": config.log.sample_text_scale,
                              "guidance_interval": list(config.log.sample_guidance_interval)}
    with ema.swapped_in(denoiser):
        if config.model.vllm and pipe.vllm is None:
            pipe.attach_vllm(load_vllm(config.model.vllm))
        pipe.save_pretrained(tmp)
    atomic_write_json(os.path.join(tmp, CONFIG_FILE), config.model_dump(mode="json"))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)
    return model_dir


# ----------------------------------------------------------------------------------- helpers


def _record_digests(accelerator, denoiser, out_dir: str) -> None:
    """Each process's parameter hash, gathered into rank-digests.json: DDP must keep them identical."""
    import hashlib

    from accelerate.utils import gather_object

    h = hashlib.sha256()
    for name, p in sorted(accelerator.unwrap_model(denoiser).state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    digests = gather_object([h.hexdigest()])
    if accelerator.is_main_process:
        atomic_write_json(os.path.join(out_dir, "rank-digests.json"), {"world_size": len(digests), "digests": digests})


def change_weights(target_latents: torch.Tensor, input_latents: torch.Tensor, change_weight: float,
                   scaling: float, threshold: float = 0.25) -> torch.Tensor:
    """(B, 1, h, w) loss weights: 1 + ``change_weight`` where the target's latent differs from the input's.

    A position counts as changed when the channel-mean absolute difference of the unscaled latents exceeds
    ``threshold`` latent standard deviations (1 / ``scaling``); the map is dilated by one position (the
    edit's border) and normalised to mean 1 per sample, so the loss keeps its scale.
    """
    diff = (target_latents - input_latents).abs().mean(dim=1, keepdim=True) * scaling  # in latent std units
    changed = nn.functional.max_pool2d((diff > threshold).float(), kernel_size=3, stride=1, padding=1)
    weight = 1.0 + change_weight * changed
    return weight / weight.mean(dim=(1, 2, 3), keepdim=True)


def _mix(seed: int, micro: int, rank: int) -> int:
    # A distinct, reproducible stream per (seed, micro-step, process).
    return (seed * 1_000_003 + micro * 7_919 + rank * 104_729) % (2**63 - 1)


def _optimizer(config: TrainConfig, params):
    o = config.optim
    if o.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("optim.use_8bit_adam needs the bitsandbytes package: pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def read_losses(out_dir: str) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in LossLog.read(os.path.join(out_dir, LOSSES))]


def _tensorboard(config: TrainConfig, accelerator):
    if not (config.log.tensorboard and accelerator.is_main_process):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(os.path.join(config.log.out_dir, "tensorboard"))


@torch.no_grad()
def _sample_grid(pipe, ema, denoiser, config: TrainConfig, name: str) -> str | None:
    """Save rows of (input, generated, target) for the first validation pairs, with the EMA weights."""
    from PIL import Image

    try:
        val = PairSource(config.data.root, config.data.val_split, config.data.resolution, config.data.vllm_cache,
                         need_vllm=config.needs_vllm, need_descriptions=config.needs_descriptions)
    except Exception as exc:  # noqa: BLE001 - a missing validation split only costs the grid
        logger.warning("no sample grid: %s", exc)
        return None
    n = min(config.log.num_samples, len(val))
    idx = list(range(n))
    pairs = [val.images(i) for i in idx]
    inputs = torch.stack([p[0] for p in pairs])
    vllm = val.vllm(idx)
    kwargs = {}
    if vllm is not None:
        kwargs = dict(vllm_image_tokens=vllm.image_tokens, vllm_text_tokens=vllm.text_tokens,
                      vllm_text_mask=vllm.text_mask)
    denoiser.eval()
    scales = _sample_scales(config)
    if config.model.mode == "t2i":  # SDEdit from the input frame; no image guidance
        scales = dict(guidance_scale=config.log.sample_text_scale, strength=0.6)
    with ema.swapped_in(denoiser):
        out = pipe(inputs, [val.texts(i)[0] for i in idx], description=[val.texts(i)[1] for i in idx],
                   num_inference_steps=config.log.sample_steps, generator=torch.Generator().manual_seed(0),
                   output_type="pt", progress=False, **kwargs, **scales)
    denoiser.train()
    rows = torch.stack([inputs, out.images.cpu().float(), torch.stack([p[1] for p in pairs])], dim=1)  # (n, 3, 3, R, R)
    grid = rows.permute(0, 3, 1, 4, 2).reshape(n * inputs.shape[-1], 3 * inputs.shape[-1], 3)  # (n*R, 3*R, 3)
    path = os.path.join(config.log.out_dir, "samples", f"{name}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(((grid.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()).save(path)
    return path


def _sample_scales(config: TrainConfig) -> dict:
    return dict(image_guidance_scale=config.log.sample_image_scale, guidance_scale=config.log.sample_text_scale,
                guidance_interval=tuple(config.log.sample_guidance_interval))
