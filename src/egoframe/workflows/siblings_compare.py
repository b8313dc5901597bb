"""`egoframe sibling compare`: SmartEdit, MGIE and ReasonPix2Pix trained and evaluated on the embedded world.

Steps, each resumable (a finished step is reused, an interrupted one continues):

1. data: the curated world pairs, or (default) their reasoning variant (``write_reasoning_variant``) in
   ``OUT/data-reasoning``, whose records carry ``extra.instruction``: the systems train on reasoning instructions;
2. train each system in ``OUT/runs/<system>`` (SmartEdit: stage 1 in ``OUT/runs/smartedit-stage1``, then stage 2
   initialised from it); a finished run is reused, an interrupted one resumes from its latest checkpoint;
3. generate a seeded held-out (test-split) sample with each system, once with the direct instruction (the
   action label) and once with the reasoning instruction; optionally LEGO (fed the label); plus two references:
   "copy input" (a generator that does nothing) and the true target passed through the sibling models' VAE
   (the best any sibling output can look after decoding);
4. evaluate with the oracle (action success, state accuracy) and PSNR / SSIM against the true target;
5. write REPORT.md with 95 % bootstrap intervals and paired bootstrap tests (each column vs copy, reasoning vs
   direct per system), a bar chart and an image grid.

Reused from ``egoframe.workflows.reproduce``: the held-out sample, the reference columns, the tables, paired
differences, figures and the oracle section, so both reports read the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

from egoframe.data.records import load_records
from egoframe.diffusion import encode_image_latents
from egoframe.errors import ConfigError, InputError
from egoframe.evaluation.generation_set import write_generation_set
from egoframe.evaluation.oracle import REPORT_FILE, OracleReader, resolve_oracle
from egoframe.evaluation.runner import EvalConfig, MetricWeights, evaluate_folder
from egoframe.pipelines.loading import load_pipeline
from egoframe.siblings import train as sibling_train
from egoframe.siblings.pipeline import SIBLING_FILE, load_sibling_pipeline
from egoframe.siblings.reasoning import write_reasoning_variant
from egoframe.utils.images import tensor_to_pil
from egoframe.workflows.reproduce import (
    held_out_records,
    image_grid,
    metric_bars,
    metric_table,
    oracle_section,
    paired_difference,
    reference_samples,
    verdict,
)
from egoframe.workflows.stages import Stages
from egoframe.world import WorldManifest

logger = logging.getLogger(__name__)

SYSTEMS = ("smartedit", "mgie", "rp2p")
SYSTEM_NAMES = {"smartedit": "SmartEdit", "mgie": "MGIE", "rp2p": "ReasonPix2Pix", "lego": "LEGO"}
METRICS = ["action-success", "state-acc", "psnr", "ssim"]
COPY, VAE_TARGET = "copy", "vae-target"
KINDS = ("direct", "reasoning")
# Settings a finished or interrupted run may differ in without being another run (as train.py's resume check).
FREE_SETTINGS = {"checkpoint_every", "keep_checkpoints"}
# --set may not move a run or change what it is.
FIXED_SETTINGS = {"system", "stage", "root", "split", "out_dir", "init_from"}


@dataclass
class CompareConfig:
    data: str  # curated (+ enriched) world pairs with a test split
    world: str
    out_dir: str
    oracle: str | None = None  # `egoframe oracle train` output; None: the shipped oracle
    report_dir: str | None = None  # REPORT.md + PNGs; None: out_dir/report
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    lego: str | None = None  # a LEGO model directory to add as a column (fed the action label)
    reasoning: bool = True  # train on the reasoning variant; evaluate direct + reasoning instructions
    small: bool = False
    resolution: int | None = None  # default 32 small / 64 full
    steps: int | None = None  # optimizer steps per run (SmartEdit: per stage); default 40 small / 500 full
    batch_size: int | None = None  # default 8 small / 16 full
    lr: float = 5e-4  # tiny models from scratch (as `egoframe reproduce`); the papers' 1e-4 fine-tunes
    n_test: int | None = None  # held-out pairs; default 12 small / 96 full
    sample_steps: int | None = None  # denoising steps; default 10 small / 25 full
    image_scale: float = 1.5
    text_scale: float = 1.5
    seed: int = 0
    resamples: int = 2000
    train_overrides: dict = field(default_factory=dict)  # further SiblingTrainConfig keys for every run
    threads: int | None = None

    def resolved(self) -> "CompareConfig":
        def pick(value, small, full):
            return value if value is not None else (small if self.small else full)

        out = CompareConfig(**asdict(self))

        out.data, out.world = (os.path.abspath(p) for p in (self.data, self.world))
        out.oracle = os.path.abspath(resolve_oracle(self.oracle))
        out.out_dir = os.path.abspath(self.out_dir)
        out.lego = os.path.abspath(self.lego) if self.lego else None
        out.report_dir = os.path.abspath(self.report_dir or os.path.join(self.out_dir, "report"))
        out.resolution = pick(self.resolution, 32, 64)
        out.steps = pick(self.steps, 40, 500)
        out.batch_size = pick(self.batch_size, 8, 16)
        out.n_test = pick(self.n_test, 12, 96)
        out.sample_steps = pick(self.sample_steps, 10, 25)
        systems = list(dict.fromkeys(s.strip().lower() for s in self.systems if s.strip()))
        unknown = [s for s in systems if s not in SYSTEMS]
        if unknown or not systems:
            raise ConfigError(f"systems must be a non-empty list of {', '.join(SYSTEMS)}; got {', '.join(unknown)}"
                              if unknown else f"no systems given; choose from {', '.join(SYSTEMS)}")
        out.systems = [s for s in SYSTEMS if s in systems]  # a fixed order for tables and figures
        if out.resolution < 16 or out.resolution % 8:
            raise ConfigError(f"resolution must be a multiple of 8 and >= 16, got {out.resolution}")
        for name in ("steps", "batch_size", "sample_steps"):
            if getattr(out, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(out, name)}")
        if out.n_test < 2:
            raise ConfigError("n_test must be >= 2 (intervals need at least two samples)")
        fixed = sorted(FIXED_SETTINGS & set(self.train_overrides))
        if fixed:
            raise ConfigError(f"train overrides may not set {', '.join(fixed)}: compare chooses them per run")
        return out

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.reasoning else ("direct",)


# ------------------------------------------------------------------------------------------- steps


def check_inputs(cfg: CompareConfig) -> dict:
    """Fail in one line on a bad --data, --world, --oracle or --lego before anything trains; returns the
    oracle's own report (empty when it has none)."""
    if not os.path.isfile(os.path.join(cfg.data, "pairs.parquet")):
        raise InputError(f"--data {cfg.data} is not a curated data set (no pairs.parquet)")
    WorldManifest.load(cfg.world)
    OracleReader.load(cfg.oracle)
    if cfg.lego and not os.path.isfile(os.path.join(cfg.lego, "model_index.json")):
        raise InputError(f"--lego {cfg.lego} is not a model directory (no model_index.json)")
    path = os.path.join(cfg.oracle, REPORT_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def prepare_data(cfg: CompareConfig) -> tuple[str, dict]:
    """The data the systems train and are evaluated on, and how many records it kept."""
    if not cfg.reasoning:
        return cfg.data, {}

    root = os.path.join(cfg.out_dir, "data-reasoning")
    written = not os.path.isfile(os.path.join(root, "pairs.parquet"))
    if written:
        write_reasoning_variant(cfg.data, root)
    kept, total = len(load_records(root)), len(load_records(cfg.data))
    return root, {"kept": kept, "skipped": total - kept, "written": written}


def run_configs(cfg: CompareConfig, system: str, root: str) -> list:
    """The SiblingTrainConfig of each run of ``system`` in training order (SmartEdit: stage 1, stage 2)."""
    from pydantic import ValidationError

    runs = os.path.join(cfg.out_dir, "runs")
    common = {"root": root, "resolution": cfg.resolution, "max_steps": cfg.steps, "batch_size": cfg.batch_size,
              "lr": cfg.lr, "seed": cfg.seed, "checkpoint_every": max(cfg.steps // 5, 1),
              "prediction_type": "v_prediction", **cfg.train_overrides}  # as the shipped LEGO (docs/embedded)

    def make(**settings):
        try:
            return sibling_train.SiblingTrainConfig(**settings)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"training settings: {'.'.join(str(p) for p in err['loc']) or 'config'}: "
                              f"{err['msg']}") from None

    if system != "smartedit":
        return [make(system=system, out_dir=os.path.join(runs, system), **common)]
    stage1 = make(system=system, stage=1, out_dir=os.path.join(runs, "smartedit-stage1"), **common)
    stage2 = make(system=system, out_dir=os.path.join(runs, system),
                  init_from=os.path.join(stage1.out_dir, "stage1"), **common)
    return [stage1, stage2]


def _finished(config) -> bool:
    if config.stage == 1:
        return os.path.isfile(os.path.join(config.out_dir, "stage1", "llm", "config.json"))

    return os.path.isfile(os.path.join(config.out_dir, "model", SIBLING_FILE))  # written last by the export


def _changed_settings(config) -> list[str]:
    path = os.path.join(config.out_dir, sibling_train.CONFIG_FILE)
    if not os.path.exists(path):
        return ["(no saved config)"]
    with open(path) as fh:
        saved = json.load(fh)
    now = config.model_dump(mode="json")
    return sorted(k for k in set(saved) | set(now) if k not in FREE_SETTINGS and saved.get(k) != now.get(k))


def train_run(config) -> dict:
    """Train one run, or reuse it when finished with the same settings, or resume it when interrupted."""
    if _finished(config):
        changed = _changed_settings(config)
        if changed:
            raise ConfigError(f"{config.out_dir} holds a run trained with other settings ({', '.join(changed)}): "
                              "use another --out")
        return {"out_dir": config.out_dir, "reused": True}
    resume = sibling_train.latest_sibling_checkpoint(config.out_dir) is not None
    if not resume and os.path.exists(os.path.join(config.out_dir, sibling_train.LOSSES)):
        # killed before its first checkpoint: nothing to continue from, so it starts again
        shutil.rmtree(config.out_dir)
    t0 = time.time()
    result = sibling_train.train_sibling(config, progress=False, resume=resume)
    return {"out_dir": config.out_dir, "seconds": round(time.time() - t0, 1), "resumed": resume,
            "final_loss": result.final_loss}


def train_systems(cfg: CompareConfig, root: str) -> dict[str, dict]:
    """{run name: info} for every run; the model of system s is ``OUT/runs/s/model``."""
    out = {}
    for system in cfg.systems:
        for config in run_configs(cfg, system, root):
            name = os.path.basename(config.out_dir)
            logger.info("training %s", name)
            out[name] = train_run(config)
    return out


STAGE_TIMES = "stage_times.json"


def _write_images(paths: list[str], make, batch: int = 8) -> int:
    """Make the images whose files are missing, ``batch`` rows per call of ``make(rows)``; returns how many."""
    todo = [k for k, path in enumerate(paths) if not os.path.exists(path)]
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        for k, image in zip(chunk, make(chunk)):
            tmp = paths[k] + ".tmp.png"
            image.save(tmp)
            os.replace(tmp, paths[k])  # a killed run leaves no half-written image behind
    return len(todo)


def _check_generation_settings(cfg: CompareConfig, root: str) -> None:
    """Images of an earlier run are reused only when they were made with the same settings (a system or LEGO
    column may be added later; LEGO's columns are redone when --lego names another model)."""
    keys = ("seed", "n_test", "sample_steps", "image_scale", "text_scale", "resolution", "reasoning", "steps",
            "batch_size", "lr", "train_overrides")
    settings = {k: getattr(cfg, k) for k in keys}
    path = os.path.join(root, "generation_settings.json")
    saved = {}
    if os.path.exists(path):
        with open(path) as fh:
            saved = json.load(fh)
        changed = sorted(k for k in settings if saved.get(k) != settings[k])
        if changed:
            raise ConfigError(f"{root} holds images generated with other settings ({', '.join(changed)}): "
                              "use another --out")
    if cfg.lego and saved.get("lego") and saved["lego"] != cfg.lego:
        for method in ("lego-direct", "lego-reasoning"):
            shutil.rmtree(os.path.join(root, method), ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    with open(path, "w") as fh:
        json.dump({**settings, "lego": cfg.lego or saved.get("lego")}, fh, indent=1)


def generate_set(cfg: CompareConfig, data: str, records) -> tuple[str, list[str], dict]:
    """Write the generation set (docs/formats.md) of every column on the held-out records; resumable.
    Returns (set dir, method columns, notes)."""
    import torch
    from PIL import Image

    root = os.path.join(cfg.out_dir, "generation_set")
    _check_generation_settings(cfg, root)
    samples = reference_samples(root, data, records, cfg.resolution)
    inputs = [Image.open(s.input).convert("RGB") for s in samples]
    texts = {"direct": [r.action for r in records],
             "reasoning": [str(r.extra.get("instruction") or r.action) for r in records]}
    if cfg.reasoning:
        for s, reasoning in zip(samples, texts["reasoning"]):
            s.extra["reasoning_instruction"] = reasoning

    def generators(rows):  # row k uses seed + k in every column: columns differ only by system and text
        return [torch.Generator().manual_seed(cfg.seed + k) for k in rows]

    def paths_of(method):
        os.makedirs(os.path.join(root, method), exist_ok=True)
        return [os.path.join(root, method, f"{s.sample_id}.png") for s in samples]

    columns: dict[str, list[str]] = {}
    notes: dict = {"vae": {}, "made": 0}
    for system in cfg.systems:
        pipe = None
        model_dir = os.path.join(cfg.out_dir, "runs", system, "model")
        for kind in cfg.kinds:
            method = f"{system}-{kind}"
            columns[method] = paths_of(method)
            if all(os.path.exists(p) for p in columns[method]):
                continue
            if pipe is None:
                pipe = load_sibling_pipeline(model_dir)

            def make(rows, pipe=pipe, kind=kind):
                return pipe([inputs[k] for k in rows], [texts[kind][k] for k in rows],
                            num_inference_steps=cfg.sample_steps, image_guidance_scale=cfg.image_scale,
                            guidance_scale=cfg.text_scale, generator=generators(rows), progress=False).images

            notes["made"] += _write_images(columns[method], make)
        notes["vae"][system] = _vae_digest(os.path.join(model_dir, "vae"))
    # The sibling models' VAE applied to the true target: what a perfect latent looks like once decoded.
    columns[VAE_TARGET] = paths_of(VAE_TARGET)
    if not all(os.path.exists(p) for p in columns[VAE_TARGET]):
        vae_pipe = load_sibling_pipeline(os.path.join(cfg.out_dir, "runs", cfg.systems[0], "model"))
        targets = [Image.open(s.target).convert("RGB") for s in samples]
        notes["made"] += _write_images(columns[VAE_TARGET],
                                       lambda rows: _vae_round_trip(vae_pipe, [targets[k] for k in rows]))
    if cfg.lego:
        method = "lego-direct"
        columns[method] = paths_of(method)
        if not all(os.path.exists(p) for p in columns[method]):
            lego = load_pipeline(cfg.lego)
            lego.set_progress_bar_config(disable=True)

            def make_lego(rows):
                return lego([inputs[k] for k in rows], [texts["direct"][k] for k in rows],
                            num_inference_steps=cfg.sample_steps, image_guidance_scale=cfg.image_scale,
                            guidance_scale=cfg.text_scale, generator=generators(rows), progress=False).images

            notes["made"] += _write_images(columns[method], make_lego)
        with Image.open(columns[method][0]) as first:
            notes["lego_resolution"] = first.size[0]
        if cfg.reasoning:
            # LEGO takes an action label, not a free-form instruction: its reasoning column is the label's images.
            columns["lego-reasoning"] = paths_of("lego-reasoning")
            for src, dst in zip(columns["lego-direct"], columns["lego-reasoning"]):
                if not os.path.exists(dst):
                    shutil.copyfile(src, dst)
    methods = [COPY, VAE_TARGET, *[m for m in columns if m != VAE_TARGET]]
    for k, s in enumerate(samples):
        for method in methods[1:]:
            s.generated[method] = columns[method][k]
    write_generation_set(root, samples, methods)
    return root, methods, notes


def _vae_digest(vae_dir: str) -> str:
    """A short hash of the VAE weights (the systems share one VAE when their digests agree)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(os.listdir(vae_dir)):
        if name.endswith(".safetensors"):
            with open(os.path.join(vae_dir, name), "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()[:12]


def _vae_round_trip(pipe, images) -> list:
    import torch

    with torch.no_grad():
        pixels = pipe.prepare_images(images, [])  # resized to the model's resolution, [-1, 1]
        latents = encode_image_latents(pipe.vae, pixels)  # (B, 4, h, w), the posterior's mode
        return tensor_to_pil(pipe.vae.decode(latents).sample)


def evaluate_set(cfg: CompareConfig, set_dir: str):
    return evaluate_folder(set_dir, out_dir=os.path.join(cfg.out_dir, "eval"),
                           config=EvalConfig(metrics=list(METRICS), weights=MetricWeights(oracle=cfg.oracle,
                                                                                          world=cfg.world),
                                             resamples=cfg.resamples, seed=cfg.seed))


# ------------------------------------------------------------------------------------------- the report


def _label(method: str) -> str:
    if method == COPY:
        return "copy input (reference)"
    if method == VAE_TARGET:
        return "target through the sibling VAE (ceiling)"
    system, kind = method.rsplit("-", 1)
    text = "action label" if kind == "direct" else "reasoning instruction"
    if system == "lego" and kind == "reasoning":
        text = "action label (LEGO takes no reasoning instruction)"
    return f"{SYSTEM_NAMES[system]}, {text}"


def comparisons(summary: dict, cfg: CompareConfig, methods: list[str]) -> list[dict]:
    """Paired bootstrap differences: every generated column − copy; per system reasoning − direct."""
    wanted = [(m, COPY) for m in methods if m not in (COPY, "lego-reasoning")]  # LEGO's columns are identical
    if cfg.reasoning:
        wanted += [(f"{s}-reasoning", f"{s}-direct") for s in cfg.systems]
    words = {"holds": "higher", "reversed": "lower"}
    out = []
    for a, b in wanted:
        for metric in METRICS:
            diff = paired_difference(summary, a, b, metric)
            if diff is None:  # identical images in both columns (scores not finite): nothing to test
                continue
            word = verdict(diff, True).split(" ")[0]
            out.append({"a": a, "b": b, "metric": metric, **diff,
                        "reading": f"{a} {words[word]}" if word in words else "not resolved (interval contains 0)"})
    return out


def _figures(summary: dict, set_dir: str, report_dir: str, cfg: CompareConfig, methods: list[str]) -> None:
    palette = {"smartedit": "#1f77b4", "mgie": "#2ca02c", "rp2p": "#9467bd", "lego": "#d62728"}
    colours = []
    for m in methods:
        system, _, kind = m.rpartition("-")
        base = palette.get(system, "#999999")
        colours.append(base + ("88" if kind == "reasoning" else ""))  # reasoning columns lighter
    metric_bars(summary, methods, colours, os.path.join(report_dir, "metrics.png"))
    grid = [m for m in methods if m not in (COPY, VAE_TARGET, "lego-reasoning")]
    image_grid(set_dir, grid, os.path.join(report_dir, "grid.png"))


def write_report(cfg: CompareConfig, summary: dict, set_dir: str, methods: list[str], oracle_report: dict,
                 runs: dict, timings: dict, data_info: dict, notes: dict, command: str) -> str:
    os.makedirs(cfg.report_dir, exist_ok=True)
    _figures(summary, set_dir, cfg.report_dir, cfg, methods)
    tests = comparisons(summary, cfg, methods)
    n = summary["n"]
    trained_on = ("the reasoning variant of the curated world pairs (`write_reasoning_variant`: each record's "
                  "instruction is a rule-based need or goal, e.g. \"take cup\" -> \"I am thirsty.\"; "
                  f"{data_info.get('kept')} records kept, {data_info.get('skipped')} without a rule left out)"
                  if cfg.reasoning else "the curated world pairs with the action label as the instruction")
    vae_digests = set(notes.get("vae", {}).values())
    lines = [
        "# SmartEdit, MGIE and ReasonPix2Pix compared on the embedded world", "",
        f"Made by `{command}` (seed {cfg.seed}). n = {n} held-out (test-split) pairs per column, the same pairs "
        "and the same noise seed per row in every column; every cell is the mean with its 95 % "
        f"percentile-bootstrap interval ({summary['resamples']} resamples).", "",
        f"**Training.** Each system trained {cfg.steps} steps"
        + (f" (SmartEdit: {cfg.steps} for stage 1, LLM-CLIP alignment, then {cfg.steps} for stage 2)"
           if "smartedit" in cfg.systems else "")
        + f" at {cfg.resolution} px, batch {cfg.batch_size}, lr {cfg.lr}, on {trained_on}; the tiny LLaVA (16-d) "
        "and tiny 8-channel UNet of `egoframe.siblings.train`"
        + (f", with these settings changed: {json.dumps(cfg.train_overrides)}" if cfg.train_overrides else "")
        + ".", "",
        "**Instructions.** *action label*: the direct instruction (\"take cup\"); *reasoning instruction*: the "
        "record's reasoning instruction (\"I am thirsty.\"). Sampling: "
        f"{cfg.sample_steps} steps, dual guidance s_x = {cfg.image_scale}, s_c = {cfg.text_scale}.", "",
        "**Metrics.** *Action success* and *state accuracy*: an oracle state reader (`egoframe oracle train`) "
        "reads the generated frame's scene facts, compared with the world's true state at the target frame "
        "(docs/evaluation.md, \"Oracle metrics\"). PSNR / SSIM compare with the true target frame at the "
        "generated image's size.", "",
        "## Results", "", *metric_table(summary, [(_label(m), m) for m in methods], METRICS, with_n=True), "",
        "References: *copy input* is the input frame unchanged (a generator that does nothing); *target through "
        "the sibling VAE* is the true target frame encoded and decoded by the VAE the sibling models sample "
        "with, the best any sibling output can score once decoded"
        + ("" if len(vae_digests) <= 1 else " (computed with the first system's VAE; their VAEs differ)") + ".",
    ]
    if cfg.lego:
        lego_res = notes.get("lego_resolution")
        lines += ["", f"LEGO is the model in `{cfg.lego}`, fed the action label (its own VLLM writes the "
                  "description it reads). LEGO cannot take reasoning instructions, so its *reasoning* row repeats "
                  "its action-label images and is not a test of reasoning."
                  + (f" It generates at {lego_res} px, the siblings at {cfg.resolution} px; pixel metrics compare "
                     "each image with the target resized to it." if lego_res and lego_res != cfg.resolution else "")]
    if cfg.reasoning:
        lines += ["", "The systems trained on reasoning instructions only; the action labels are words they "
                  "saw (in the labels and descriptions of the training pairs) but never as the instruction."]
    lines += ["", "## Paired tests", "",
              "Paired bootstrap on the same samples: difference (first − second, in the metric's units) with its "
              "95 % interval and two-sided p. *higher* / *lower*: the interval excludes 0 on that side.", "",
              "| first | second | metric | difference | 95 % interval | p | reading |", "|---|---|---|---|---|---|---|"]
    for t in tests:
        lines.append(f"| {t['a']} | {t['b']} | {t['metric']} | {t['value']:.4g} | [{t['low']:.4g}, {t['high']:.4g}] "
                     f"| {t['p']:.4f} | {t['reading']} |")
    copy = summary["per_method"][COPY]["action-success"]["value"]
    ceiling = summary["per_method"][VAE_TARGET]["action-success"]["value"]
    lines += ["", "### Reading", "",
              f"- Copying the input reaches {copy * 100:.1f} % action success; the true target through the sibling "
              f"VAE reaches {ceiling * 100:.1f} % and {summary['per_method'][VAE_TARGET]['psnr']['value']:.1f} dB "
              "PSNR. A system near the copy level has not learned to carry out actions; one cannot exceed what "
              "its VAE can decode.",
              *([] if "vae" in sibling_train.SiblingTrainConfig.model_fields else [
                  "- `train_sibling` builds the VAE (and the CLIP text encoder of the null condition) with random "
                  "weights and keeps them frozen (`SiblingTrainConfig` has no trained-VAE setting), so the ceiling "
                  "above bounds every sibling row; LEGO decodes with its trained VAE."]),
              f"- n = {n}: differences smaller than the intervals above are not resolved by this run.", "",
              "## Figures", "", "![metrics](metrics.png)", "",
              "Bars: mean with 95 % bootstrap interval (grey: references; lighter bars: reasoning instruction).",
              "", "![grid](grid.png)", "",
              "Rows: held-out pairs (labelled with the action); columns: input, each system and instruction, "
              "ground truth.", "", *oracle_section(oracle_report), "",
              "## Run", "", "Wall seconds per stage: in the invocation that wrote this report, and when the stage last "
              "did its work (a rerun reuses finished runs and images).", "",
              "| stage | this invocation | when last done |", "|---|---|---|",
              *[f"| {k} | {now} | {'' if last is None else last} |" for k, (now, last) in timings.items()], "",
              "Training runs: " + ", ".join(
                  f"{k}: {'reused' if v.get('reused') else str(v.get('seconds')) + ' s'}"
                  + (" (resumed)" if v.get("resumed") else "") for k, v in runs.items()), "",
              "Configuration (also in `compare_config.json`):", "", "```json", json.dumps(asdict(cfg), indent=1),
              "```", ""]
    path = os.path.join(cfg.report_dir, "REPORT.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    with open(os.path.join(cfg.report_dir, "summary.json"), "w") as fh:
        json.dump({"summary": summary, "comparisons": tests, "oracle": oracle_report, "timings": timings,
                   "runs": runs, "data": data_info}, fh, indent=1)
    with open(os.path.join(cfg.report_dir, "compare_config.json"), "w") as fh:
        json.dump(asdict(cfg), fh, indent=1)
    return path


# ------------------------------------------------------------------------------------------- entry point


def compare(config: CompareConfig, command: str = "egoframe sibling compare") -> str:
    """Run every step (reusing finished ones) and return the path of REPORT.md."""
    import torch

    cfg = config.resolved()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    oracle_report = check_inputs(cfg)
    os.makedirs(cfg.out_dir, exist_ok=True)
    timings = Stages(cfg.out_dir, say=logger.info, file=STAGE_TIMES)
    start = t = time.time()
    data, data_info = prepare_data(cfg)
    records = held_out_records(cfg, data)  # no test split: fails here, before anything trains
    timings.record("data" + (" (reasoning variant)" if cfg.reasoning else ""), time.time() - t,
                   data_info.get("written", True))
    runs = train_systems(cfg, data)
    for name, info in runs.items():
        timings.record(f"training {name}", info.get("seconds", 0.0), not info.get("reused"))
    t = time.time()
    set_dir, methods, notes = generate_set(cfg, data, records)
    timings.record("generation", time.time() - t, notes["made"] > 0)
    t = time.time()
    report = evaluate_set(cfg, set_dir)
    timings.record("evaluation", time.time() - t, True)
    timings.record("total (before the report)", time.time() - start, True)
    path = write_report(cfg, report.summary, set_dir, methods, oracle_report, runs, timings.rows(), data_info, notes,
                        command)
    logger.info("report: %s", path)
    return path


__all__ = ["SYSTEMS", "CompareConfig", "compare", "comparisons", "run_configs", "train_run"]
