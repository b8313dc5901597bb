"""`egoframe recipe`: the shipped embedded default, made from nothing with one resumable command.

The recipe of ``src/egoframe/assets/README.md`` as stages (a rerun skips what is finished and continues
what was interrupted; seconds per stage are kept in ``timings.json``):

pairs (``egoframe world pairs``: simulated (input, action, target) pairs with curation's frame rule) ->
enrich (rule backend) -> VAE (the shipped one, or trained on the pairs) -> VLLM (instruction tuning from
scratch, with stage-0 vision pretraining) -> embed (H_i, H_t cache) -> diffusion (the LEGO UNet) ->
optionally ``eval-world`` on a world seed never used for anything else.

The result is ``OUT/diffusion/model``: a complete model directory, what ``src/egoframe/assets/default-model``
holds.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from egoframe.enrichment import enrich_dataset
from egoframe.enrichment.rules import RuleConfig
from egoframe.errors import InputError
from egoframe.training.config import parse_config
from egoframe.utils.checkpoint import atomic_write_json
from egoframe.vllm.cache import build_embedding_cache
from egoframe.vllm.model import load_vllm
from egoframe.vllm.train import VllmTrainConfig, train_vllm
from egoframe.vllm.train import latest_checkpoint as latest_vllm_checkpoint
from egoframe.workflows.eval_world import EvalWorldConfig, run_eval_world
from egoframe.workflows.quickstart import shipped_vae_dir
from egoframe.workflows.stages import DONE_BEFORE, Stages
from egoframe.world.pairs import write_pairs


@dataclass
class RecipeConfig:
    out_dir: str = "egoframe-default"
    pairs: int = 24000
    seed: int = 101  # the pairs' world seed (the shipped model's)
    resolution: int = 64  # the frames the diffusion model sees
    pair_resolution: int = 128  # the frames the pairs render at (the world's own size; the VLLM reads these)
    workers: int = 2
    # None: the shipped VAE; "train": train a KL VAE on the pairs; "patch": fit the lossless patch autoencoder
    # (models/autoencoder.py: 128 px -> 48 x 32 x 32); else an autoencoder directory
    vae: str | None = None
    vae_steps: int = 800
    vllm_epochs: int = 2
    vllm_pretrain_steps: int = 6000
    # stage 0's reading head (`egoframe vllm train --pretrain-vision-reading`): without it the tower drops the
    # colour of the cup an action means and the VLLM names one constant colour; with it (weight 1, 6000 stage-0
    # steps) the VLLM reads the object 81 % instead of 60 % on tuning world 7101 (docs/embedded/LOG.md)
    vllm_reading: float = 1.0
    vllm_threads: int = 2
    # 4900 steps at 2 attention levels cost what 6800 did at 1 (~1.4x a step); shipped 2026-12-08, docs/embedded/LOG.md
    steps: int = 4900
    batch_size: int = 32
    lr: float = 5e-4
    ema_decay: float = 0.999
    change_weight: float = 4.0
    decay_start: int | None = None  # cosine LR decay from this step (None: constant, as shipped)
    unet_channels: tuple[int, ...] = (32, 64, 128)
    # UNet levels with attention, from the coarsest (models.tiny.TinyConfig.attention_levels); 2 adds the 16 x 16
    # level at ~1.4x the step cost; with it the annotation's description is carried out +10.5 points more often on
    # unseen world 9012 (row 5 of docs/embedded/LOG.md)
    attention_levels: int = 2
    # the sampling the model recommends (its sampling.json): re-tuned on tuning world 7101, docs/embedded/LOG.md
    sample_steps: int = 20
    sample_text_scale: float = 5.0
    sample_image_scale: float = 2.5
    sample_guidance_interval: tuple[float, float] = (0.0, 1.0)
    eval_seed: int | None = None  # eval-world on this world seed at the end (None: no evaluation)
    eval_videos: int = 150
    eval_n: int = 200
    progress: bool = True
    timings: dict = field(default_factory=dict)

    def validate(self) -> "RecipeConfig":
        if self.pairs < 100:
            raise InputError(f"--pairs must be >= 100, got {self.pairs}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError("--steps and --batch-size must be >= 1 and --lr > 0")
        if self.decay_start is not None and not 0 <= self.decay_start < self.steps:
            raise InputError(f"--decay-start must be in [0, --steps), got {self.decay_start}")
        if self.vae not in (None, "train", "patch") and not os.path.isfile(os.path.join(self.vae, "config.json")):
            raise InputError(f"--vae {self.vae} is not a VAE directory (config.json): give one, 'train', 'patch' "
                             "or nothing")
        if not 1 <= self.attention_levels <= len(self.unet_channels):
            raise InputError(f"--attention-levels must be in [1, {len(self.unet_channels)}], got {self.attention_levels}")
        if self.resolution > self.pair_resolution:
            raise InputError(f"--resolution {self.resolution} is above the pairs' {self.pair_resolution} px")
        if self.vae is None:
            if shipped_vae_dir() is None:
                raise InputError("the shipped VAE is not installed: pass --vae train or --vae DIR")
        return self


def run_recipe(config: RecipeConfig, say=print) -> dict:
    config.validate()
    out = config.out_dir
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in ("pool", "vae", "vllm", "diffusion", "eval")}
    stages = Stages(out, say, config.timings)
    pool, vllm_dir = paths["pool"], paths["vllm"]
    cache = os.path.join(pool, "vllm_embeddings")
    stages.run("pairs", lambda: _pairs(config, pool))
    stages.run("enrich", lambda: _enrich(pool))
    vae_dir = _vae_dir(config, paths["vae"])
    if config.vae in ("train", "patch"):
        stages.run("vae", lambda: _vae(config, pool, vae_dir))
    stages.run("vllm", lambda: _vllm(config, pool, vllm_dir))
    stages.run("embed", lambda: _embed(config, vllm_dir, pool, cache))
    model_dir = os.path.join(paths["diffusion"], "model")
    stages.run("diffusion", lambda: _diffusion(config, pool, cache, vae_dir, vllm_dir, paths["diffusion"]))
    summary = {"model": model_dir, "config": {k: v for k, v in asdict(config).items() if k != "timings"}}
    if config.eval_seed is not None:
        summary["eval_world"] = stages.run("eval", lambda: _eval(config, model_dir, paths["eval"]))
    summary["timings_s"] = dict(stages.timings)
    summary["total_s"] = stages.total

    atomic_write_json(os.path.join(out, "summary.json"), summary)
    return summary


# ----------------------------------------------------------------------------------------- stages


def _pairs(config: RecipeConfig, out: str):
    write_pairs(out, n_pairs=config.pairs, seed=config.seed, resolution=config.pair_resolution,
                workers=config.workers)


def _enrich(data: str):
    if os.path.isfile(os.path.join(data, "descriptions.parquet")):
        return DONE_BEFORE
    summary = enrich_dataset(data, backend="rules", rules=RuleConfig(surface="counter"))
    if summary.failed:
        raise InputError(f"{summary.failed} descriptions failed: see {data}/descriptions.parquet")


def _vae_dir(config: RecipeConfig, trained: str) -> str:
    if config.vae in ("train", "patch"):
        return trained
    if config.vae is None:
        return shipped_vae_dir()
    return config.vae


def _vae(config: RecipeConfig, data: str, out: str):
    from egoframe.training.vae import VaeTrainConfig, fit_patch_autoencoder, train_vae  # lazy: pulls torch

    if config.vae == "patch":
        summary = fit_patch_autoencoder(data, out, resolution=config.resolution)
        return DONE_BEFORE if summary.get("reused") else None

    train_vae(VaeTrainConfig(data=data, out_dir=out, resolution=config.resolution, steps=config.vae_steps,
                             seed=0), progress=config.progress)


def _vllm(config: RecipeConfig, data: str, out: str):
    if os.path.exists(os.path.join(out, "model", "config.json")):
        return DONE_BEFORE
    train_vllm(VllmTrainConfig(data_dir=data, out_dir=out, epochs=config.vllm_epochs,
                               pretrain_vision_steps=config.vllm_pretrain_steps,
                               pretrain_vision_reading=config.vllm_reading, num_threads=config.vllm_threads, seed=0),
               resume=latest_vllm_checkpoint(out) is not None, progress=config.progress)


def _embed(config: RecipeConfig, vllm_dir: str, data: str, cache: str):
    model = os.path.join(vllm_dir, "model")
    build_embedding_cache(load_vllm(model), data, cache, batch_size=32, progress=config.progress, model_dir=model)


def diffusion_config(config: RecipeConfig, data: str, cache: str, vae: str, vllm_dir: str, out: str):
    """The training config of the recipe's diffusion stage (the shipped model's ``shipped.yaml``)."""
    optim = {"batch_size": config.batch_size, "max_steps": config.steps, "lr": config.lr,
             "ema_decay": config.ema_decay, "warmup_steps": 50, "change_weight": config.change_weight}
    if config.decay_start is not None:
        optim["decay_start"] = config.decay_start
    data_section = {"root": data, "resolution": config.resolution, "vllm_cache": cache}
    if _is_patch(vae):
        # Patch latents are the pixels themselves (48 x 32 x 32 per frame at 128 px): caching them for 24 000
        # pairs would take ~14 GB, and folding pixels costs nothing, so frames are decoded per batch instead.
        data_section.update(precompute=False, num_workers=2)
    return parse_config({
        "data": data_section,
        "model": {"init": "tiny", "ablation": "lego", "vae": vae, "vllm": os.path.join(vllm_dir, "model"),
                  "tiny": {"unet_norm_groups": 4, "unet_channels": list(config.unet_channels),
                           **({"attention_levels": config.attention_levels} if config.attention_levels != 1 else {})},
                  "prediction_type": "v_prediction"},
        "optim": optim,
        "log": {"out_dir": out, "checkpoint_every": 100, "num_samples": 8, "sample_every": 1000,
                "sample_steps": config.sample_steps, "sample_image_scale": config.sample_image_scale,
                "sample_text_scale": config.sample_text_scale,
                "sample_guidance_interval": list(config.sample_guidance_interval)},
        "seed": 0,
    })


def _is_patch(vae_dir: str) -> bool:
    from egoframe.models.autoencoder import autoencoder_class  # lazy: pulls diffusers

    # not made yet (a dry look at the config): the KL layout
    return os.path.isfile(os.path.join(vae_dir, "config.json")) and autoencoder_class(vae_dir) == "PatchAutoencoder"


def _diffusion(config: RecipeConfig, data: str, cache: str, vae: str, vllm_dir: str, out: str):
    from egoframe.training.trainer import latest_checkpoint, train  # lazy: pulls torch

    if os.path.exists(os.path.join(out, "model", "model_index.json")):
        return DONE_BEFORE
    train(diffusion_config(config, data, cache, vae, vllm_dir, out), resume=latest_checkpoint(out) is not None,
          progress=config.progress)


def _eval(config: RecipeConfig, model_dir: str, out: str) -> dict:
    summary = run_eval_world(EvalWorldConfig(model=model_dir, out=out, world_seed=config.eval_seed,
                                             videos=config.eval_videos, n=config.eval_n, split="all",
                                             progress=config.progress))
    return {m: {"action_success": e["action_success"], "action_success_ci": e["action_success_ci"]}
            for m, e in summary["methods"].items()}
