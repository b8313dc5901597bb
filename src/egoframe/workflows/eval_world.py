"""`egoframe eval-world`: the one protocol every number about a model on the embedded world comes from.

1. make a fresh world with the given seed (or reuse OUT/world), 2. curate it (Ego4D reader: PRE-15 input,
PNR target, the +-3 aesthetic choice; pairs whose true states show no change are dropped and counted),
3. enrich it with the rule backend, 4. generate the held-out pairs with the model's shipped sampling, once per
method, 5. score everything with the shipped oracle against the world's true states, and 6. write
``OUT/summary.json``, ``OUT/report.md`` and ``OUT/grid.png`` (seconds per stage in ``OUT/timings.json``, on the
shared stage runner of :mod:`egoframe.workflows.stages`).

Methods (same model, same noise seed per pair; they differ only in the text the model reads):
  vllm        the model's VLLM writes the description and the VLLM embeddings (what `egoframe generate` does)
  annotation  the enriched description of the annotation (rule enricher), VLLM embeddings from the frame
  label       the bare action label as the description
  copy        the input frame unchanged: the floor
  target      the true target frame: the ceiling (what a perfect generator scores with this oracle)

Every stage resumes: a killed run started again with the same arguments redoes nothing it finished.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np

from egoframe.data.curate import REPORT_FILE, CurationConfig, curate
from egoframe.data.records import load_records
from egoframe.enrichment import attach_descriptions, enrich_dataset
from egoframe.enrichment.rules import RuleConfig
from egoframe.errors import InputError
from egoframe.evaluation import stats
from egoframe.evaluation.generation_set import Sample
from egoframe.evaluation.oracle import OracleScorer, resolve_oracle
from egoframe.evaluation.pixel import psnr, ssim
from egoframe.pipelines.loading import load_pipeline
from egoframe.utils.images import image_grid, load_image, pil_to_tensor, tensor_to_pil
from egoframe.utils.progress import ProgressBar
from egoframe.workflows.stages import DONE_BEFORE, Stages
from egoframe.world import WorldManifest, make_world
from egoframe.world.facts import AMBIGUITIES, label_ambiguity, unchanged_pair

METHODS = ("vllm", "annotation", "label", "copy")
GENERATED = ("vllm", "annotation", "label")
# "roundtrip": the true target through the model's autoencoder at the model's size and back to the input's:
# the best any generator on that autoencoder can show (its decoder's ceiling). Not run unless asked for.
ALL_METHODS = (*METHODS, "roundtrip")
SUMMARY_FILE = "summary.json"


@dataclass
class EvalWorldConfig:
    model: str
    out: str
    world_seed: int
    videos: int = 400
    n: int = 200  # held-out pairs scored (all of them when fewer)
    methods: tuple[str, ...] = METHODS
    split: str = "test"  # "test": the curated test split; "all": every curated pair (a world never trained on)
    steps: int | None = None  # None: the model's shipped sampling.json
    # Sampling overrides (None: the model's sampling.json), for re-tuning a model's sampling on a tuning world
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    guidance_interval: tuple[float, float] | None = None
    batch_size: int = 8
    seed: int = 0  # pair selection and the per-pair noise seed
    oracle: str | None = None  # None: the shipped oracle
    threads: int | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def validate(self) -> "EvalWorldConfig":
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown or not self.methods:
            raise InputError(f"unknown method(s) {unknown}: choose from {', '.join(ALL_METHODS)}")
        if self.videos < 2 or self.n < 1 or self.batch_size < 1:
            raise InputError("--videos must be >= 2, --n and --batch-size >= 1")
        if self.split not in ("test", "all"):
            raise InputError(f"--split must be 'test' or 'all', got {self.split!r}")
        if self.steps is not None and self.steps < 1:
            raise InputError("--steps must be >= 1")
        for name in ("guidance_scale", "image_guidance_scale"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not 0 <= lo < hi <= 1:
                raise InputError(f"--guidance-interval must be two fractions 0 <= a < b <= 1, got {lo},{hi}")
        if not os.path.isdir(self.model):
            raise InputError(f"--model {self.model} is not a directory")
        return self


def run_eval_world(config: EvalWorldConfig, say=print) -> dict:
    import torch

    config.validate()
    oracle_dir = resolve_oracle(config.oracle)  # fail before any work when no oracle can be had
    if config.threads:
        torch.set_num_threads(config.threads)
    out = config.out
    os.makedirs(out, exist_ok=True)
    world, data = os.path.join(out, "world"), os.path.join(out, "data")
    stages = Stages(out, say=lambda _: None)  # the stages say what they do themselves
    stages.run("world", lambda: _world(config, world, say))
    stages.run("curate", lambda: _curate(config, world, data, say))
    stages.run("enrich", lambda: _enrich(data))
    records = _pairs(config, data)
    say(f"eval-world: {len(records)} held-out pairs of world seed {config.world_seed} ({config.split} split)")
    samples = stages.run("generate", lambda: _generate(config, records, data, say))
    summary = stages.run("score", lambda: _score(config, samples, world, oracle_dir))
    summary["timings_s"] = dict(stages.timings)
    _write_report(config, summary, samples)
    say(f"eval-world: -> {os.path.join(out, SUMMARY_FILE)}")
    return summary


# ----------------------------------------------------------------------------------------- stages


def _world(config: EvalWorldConfig, world: str, say) -> str | None:
    manifest = os.path.join(world, "manifest.json")
    if os.path.isfile(manifest):
        wc = WorldManifest.load(world).config
        if (wc.seed, wc.n_videos) != (config.world_seed, config.videos):
            raise InputError(f"{world} holds world seed {wc.seed} with {wc.n_videos} videos, not seed "
                             f"{config.world_seed} with {config.videos}: use another --out")
        return DONE_BEFORE
    say(f"eval-world: making world seed {config.world_seed}, {config.videos} videos")
    make_world(world, n_videos=config.videos, seed=config.world_seed, progress=config.progress)


def _curate(config: EvalWorldConfig, world: str, data: str, say) -> str | None:
    if os.path.isfile(os.path.join(data, REPORT_FILE)):
        return DONE_BEFORE
    say("eval-world: curating")
    # The world has no camera jumps and its offline similarity feature is not CLIP's, so the paper's CLIP
    # window is off; the world-truth filter (pairs showing no change) is on, as for every world curation.
    report = curate(CurationConfig(format="ego4d", annotations=os.path.join(world, "annotations", "fho_main.json"),
                                   videos=world, out=data, filter_similarity=False, progress=config.progress))
    counts = report["counts"]
    say(f"eval-world: {counts['pairs_kept']} pairs kept, {counts['filtered_unchanged_truth']} dropped as unchanged")


def _enrich(data: str) -> None:
    summary = enrich_dataset(data, backend="rules", rules=RuleConfig(surface="counter"))
    if summary.failed:
        raise InputError(f"{summary.failed} descriptions failed: see {data}/descriptions.parquet")


def _pairs(config: EvalWorldConfig, data: str):
    records = sorted((r for r in load_records(data) if config.split == "all" or r.split == "test"),
                     key=lambda r: r.id)
    if not records:
        raise InputError(f"no {config.split}-split pairs in {data}: make the world bigger (--videos)")
    attach_descriptions(records, data)
    if len(records) > config.n:
        keep = np.random.default_rng(config.seed).choice(len(records), size=config.n, replace=False)
        records = [records[i] for i in sorted(keep)]
    return records


def _generate(config: EvalWorldConfig, records, data: str, say):
    import torch
    from PIL import Image

    from egoframe.pipelines.lego import choose_sampling  # lazy: pulls diffusers

    root = config.out
    methods = [m for m in config.methods if m in GENERATED]
    roundtrip = "roundtrip" in config.methods
    for sub in ("inputs", "targets", "copy", *methods, *(["roundtrip"] if roundtrip else [])):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    samples, todo = [], []
    for k, rec in enumerate(records):
        paths = {sub: os.path.join(root, sub, f"{rec.id}.png") for sub in ("inputs", "targets", "copy", *methods)}
        if not os.path.exists(paths["inputs"]):
            shutil.copyfile(os.path.join(data, rec.input_path), paths["inputs"])
            shutil.copyfile(os.path.join(data, rec.target_path), paths["targets"])
            shutil.copyfile(paths["inputs"], paths["copy"])
        for method in methods:
            if not os.path.exists(paths[method]):
                todo.append((k, rec, method, paths[method]))
        generated = {m: paths[m] for m in ("copy", *methods) if m in config.methods or m == "copy"}
        if roundtrip:
            generated["roundtrip"] = os.path.join(root, "roundtrip", f"{rec.id}.png")
        samples.append(Sample(sample_id=rec.id, action=rec.action, description=rec.description,
                              input=paths["inputs"], target=paths["targets"], generated=generated,
                              extra={"video_id": rec.video_id, "input_frame": str(rec.input_frame),
                                     "target_frame": str(rec.target_frame), "verb": rec.verb}))
    pipe = None
    if methods or roundtrip:  # loaded once for both
        pipe = load_pipeline(config.model)
        pipe.set_progress_bar_config(disable=True)
    if roundtrip:
        _roundtrip([s for s in samples if not os.path.exists(s.generated["roundtrip"])], pipe)
    sampling_file = os.path.join(root, "model_resolution.json")
    if methods:  # generated methods: check (or record) the sampling even when every frame is already there
        sampling = choose_sampling(getattr(pipe, "sampling_defaults", None), {
            "num_inference_steps": config.steps, "guidance_scale": config.guidance_scale,
            "image_guidance_scale": config.image_guidance_scale, "guidance_interval": config.guidance_interval})
        sampling["guidance_interval"] = list(sampling["guidance_interval"])  # as JSON keeps it
        if os.path.isfile(sampling_file):
            with open(sampling_file) as fh:
                before = json.load(fh).get("sampling")
            if before is not None and before != sampling:
                raise InputError(f"{root} holds frames sampled with {before}, not {sampling}: use another --out")
        steps = sampling["num_inference_steps"]
        if todo:
            say(f"eval-world: generating {len(todo)} frames ({steps} steps, image {sampling['image_guidance_scale']} / "
                f"text {sampling['guidance_scale']}, guidance interval {tuple(sampling['guidance_interval'])})")

        with ProgressBar(config.progress, "generating", len(todo)) as bar:
            for method in methods:
                batch = [t for t in todo if t[2] == method]
                for start in range(0, len(batch), config.batch_size):
                    chunk = batch[start:start + config.batch_size]
                    frames = [Image.open(os.path.join(root, "inputs", f"{rec.id}.png")).convert("RGB")
                              for _, rec, _, _ in chunk]
                    descriptions = [None if method == "vllm" else rec.description if method == "annotation"
                                    else rec.action for _, rec, _, _ in chunk]
                    generators = [torch.Generator().manual_seed(config.seed + k) for k, _, _, _ in chunk]
                    result = pipe(frames, [rec.action for _, rec, _, _ in chunk], description=descriptions,
                                  num_inference_steps=steps, image_guidance_scale=sampling["image_guidance_scale"],
                                  guidance_scale=sampling["guidance_scale"],
                                  guidance_interval=tuple(sampling["guidance_interval"]), generator=generators,
                                  progress=False)
                    for (_, _, _, path), frame, image in zip(chunk, frames, result.images):
                        if image.size != frame.size:
                            # scored at the input's size, as a user sees it (the model's own size is reported)
                            image = image.resize(frame.size, Image.Resampling.BICUBIC)
                        tmp = f"{path}.tmp.png"
                        image.save(tmp)
                        os.replace(tmp, path)
                        bar.advance()
        with open(sampling_file, "w") as fh:
            json.dump({"model_resolution": int(pipe.resolution), "steps": steps, "sampling": sampling}, fh)
    return samples


def _roundtrip(samples, pipe) -> None:
    """Write each sample's true target encoded and decoded by the model's autoencoder (at the model's size)."""
    import torch
    from PIL import Image

    size = pipe.resolution
    with torch.no_grad():
        for start in range(0, len(samples), 32):
            chunk = samples[start:start + 32]
            targets = [Image.open(s.target).convert("RGB") for s in chunk]
            x = pil_to_tensor([t.resize((size, size), Image.Resampling.BICUBIC) for t in targets])
            latents = pipe.vae.encode(x.to(pipe.vae.device, pipe.vae.dtype)).latent_dist.mode()
            decoded = pipe.vae.decode(latents).sample.clamp(-1, 1).float().cpu()
            for s, t, image in zip(chunk, targets, tensor_to_pil(decoded)):
                path = s.generated["roundtrip"]
                image.resize(t.size, Image.Resampling.BICUBIC).save(f"{path}.tmp.png")
                os.replace(f"{path}.tmp.png", path)


def _score(config: EvalWorldConfig, samples, world: str, oracle_dir: str) -> dict:
    scorer = OracleScorer(oracle_dir, world)
    columns = [m for m in config.methods] + ["target"]
    path_of = lambda s, m: s.target if m == "target" else s.generated[m]  # noqa: E731
    per_sample: dict[str, dict[str, list[float]]] = {}
    targets = [np.asarray(load_image(s.target)) for s in samples]
    for m in columns:
        images = targets if m == "target" else [np.asarray(load_image(path_of(s, m))) for s in samples]
        success, accuracy = scorer.score(samples, images)
        per_sample[m] = {"action_success": success, "state_accuracy": accuracy,
                         "psnr": [min(psnr(i, t), 100.0) for i, t in zip(images, targets)],
                         "ssim": [ssim(i, t) for i, t in zip(images, targets)]}

    # what each sample's bare label leaves open (which object / hand / destination), from the world's annotation
    ambiguity = [label_ambiguity(scorer.world.action(s.extra["video_id"], s.sample_id)["completions"])
                 for s in samples]
    methods = {}
    for m in columns:
        entry = {}
        for metric, values in per_sample[m].items():
            est = stats.bootstrap_ci(values, seed=config.seed)
            entry[metric] = est.value
            entry[f"{metric}_ci"] = [est.low, est.high]
        verbs = sorted({s.extra["verb"] for s in samples})
        entry["action_success_per_verb"] = {
            v: {"n": sum(s.extra["verb"] == v for s in samples),
                "value": float(np.mean([x for x, s in zip(per_sample[m]["action_success"], samples)
                                        if s.extra["verb"] == v]))} for v in verbs}
        entry["action_success_by_ambiguity"] = {
            kind: {side: {"n": len(vals), "value": float(np.mean(vals)) if vals else None}
                   for side, vals in (("ambiguous", [x for x, a in zip(per_sample[m]["action_success"], ambiguity)
                                                     if a[kind]]),
                                      ("unambiguous", [x for x, a in zip(per_sample[m]["action_success"], ambiguity)
                                                       if not a[kind]]))}
            for kind in AMBIGUITIES}
        methods[m] = entry
    if "copy" in per_sample:
        # why a copied input passes: its pair's true states show no change (timing / curation), or the reader errs
        unchanged = [unchanged_pair(scorer.world, s.extra["video_id"], s.extra["verb"], int(s.extra["input_frame"]),
                                    int(s.extra["target_frame"])) for s in samples]
        passed = [bool(x) for x in per_sample["copy"]["action_success"]]
        methods["copy"]["passes"] = {"total": sum(passed), "true_states_unchanged": sum(p and u for p, u in
                                                                                      zip(passed, unchanged)),
                                     "reader_errors": sum(p and not u for p, u in zip(passed, unchanged)),
                                     "pairs_with_unchanged_true_states": sum(unchanged)}
    comparisons = []
    pairs = [(m, "copy") for m in config.methods if m in GENERATED and "copy" in config.methods]
    if "vllm" in config.methods and "label" in config.methods:
        pairs.append(("vllm", "label"))
    if "annotation" in config.methods and "label" in config.methods:
        pairs.append(("annotation", "label"))
    for a, b in pairs:
        c = stats.paired_bootstrap(per_sample[a]["action_success"], per_sample[b]["action_success"], seed=config.seed)
        comparisons.append({"metric": "action_success", "a": a, "b": b, **c.as_dict()})
    # the premise where it should show: on the pairs whose label leaves the object open (which cup, which drawer)
    object_open = [k for k, a in enumerate(ambiguity) if a["object"]]
    if "vllm" in config.methods and "label" in config.methods and len(object_open) >= 10:
        c = stats.paired_bootstrap([per_sample["vllm"]["action_success"][k] for k in object_open],
                                   [per_sample["label"]["action_success"][k] for k in object_open], seed=config.seed)
        comparisons.append({"metric": "action_success", "a": "vllm", "b": "label", "subset": "object-ambiguous",
                            "n": len(object_open), **c.as_dict()})
    if comparisons:
        for c, adjusted in zip(comparisons, stats.holm([c["p_value"] for c in comparisons])):
            c["p_holm"] = adjusted
    resolution = {}
    res_file = os.path.join(config.out, "model_resolution.json")
    if os.path.isfile(res_file):
        resolution = json.load(open(res_file))
    oracle_report = os.path.join(oracle_dir, "oracle_report.json")
    summary = {"n": len(samples), "world_seed": config.world_seed, "videos": config.videos, "split": config.split,
               "model": os.path.abspath(config.model), "oracle": os.path.abspath(oracle_dir),
               "oracle_trained_on": json.load(open(oracle_report)).get("source") if os.path.isfile(oracle_report)
               else None, **resolution, "methods": methods, "comparisons": comparisons,
               "config": {k: v for k, v in asdict(config).items() if k not in ("extra",)},
               "per_sample": {m: {k: [round(float(x), 5) for x in v] for k, v in d.items()}
                              for m, d in per_sample.items()},
               "sample_ids": [s.sample_id for s in samples]}
    summary["config"]["methods"] = list(config.methods)
    tmp = os.path.join(config.out, SUMMARY_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=1)
    os.replace(tmp, os.path.join(config.out, SUMMARY_FILE))
    return summary


def _write_report(config: EvalWorldConfig, summary: dict, samples) -> None:
    lines = [f"# eval-world: {os.path.basename(os.path.abspath(config.model))} on world seed {config.world_seed}", "",
             f"n = {summary['n']} held-out pairs ({config.split} split of a fresh {config.videos}-video world), "
             f"scored by the oracle at {summary['oracle']}; mean [95 % bootstrap interval].", "",
             "| method | action success | state accuracy | PSNR | SSIM |", "|---|---|---|---|---|"]
    for m, e in summary["methods"].items():
        cell = lambda k, f: f"{f(e[k])} [{f(e[k + '_ci'][0])}, {f(e[k + '_ci'][1])}]"  # noqa: E731
        pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
        lines.append(f"| {m} | {cell('action_success', pct)} | {cell('state_accuracy', pct)} | "
                     f"{cell('psnr', lambda v: f'{v:.2f}')} | {cell('ssim', lambda v: f'{v:.3f}')} |")
    if summary["comparisons"]:
        lines += ["", "Paired action-success differences (bootstrap percentile test on the interval's resamples; "
                  "Holm-adjusted across this table; detectable = smallest difference found with 80 % power):", "",
                  "| A − B | difference | interval | p | p (Holm) | detectable |", "|---|---|---|---|---|---|"]
        for c in summary["comparisons"]:
            d = c["difference"]
            subset = f" (object-ambiguous labels, n = {c['n']})" if c.get("subset") else ""
            lines.append(f"| {c['a']} − {c['b']}{subset} | {100 * d['value']:+.1f} | [{100 * d['low']:+.1f}, "
                         f"{100 * d['high']:+.1f}] | {stats.format_p(c['p_value'], d['resamples'])} | "
                         f"{stats.format_p(c['p_holm'], d['resamples'])} | {100 * c['detectable']:.1f} |")
    verbs = sorted({v for e in summary["methods"].values() for v in e["action_success_per_verb"]})
    cols = list(summary["methods"])
    lines += ["", "Action success per verb (%):", "", "| verb | n | " + " | ".join(cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for v in verbs:
        n = summary["methods"][cols[0]]["action_success_per_verb"][v]["n"]
        lines.append(f"| {v} | {n} | " + " | ".join(
            f"{100 * summary['methods'][m]['action_success_per_verb'][v]['value']:.0f}" for m in cols) + " |")
    lines += ["", "Action success by what the bare label leaves open (%; n ambiguous / unambiguous):", "",
              "| the label leaves open | n | " + " | ".join(f"{m}: open / settled" for m in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    fmt = lambda v: "–" if v is None else f"{100 * v:.0f}"  # noqa: E731
    for kind in next(iter(summary["methods"].values()))["action_success_by_ambiguity"]:
        split = {m: summary["methods"][m]["action_success_by_ambiguity"][kind] for m in cols}
        n = f"{split[cols[0]]['ambiguous']['n']} / {split[cols[0]]['unambiguous']['n']}"
        lines.append(f"| which {kind} | {n} | " + " | ".join(
            f"{fmt(split[m]['ambiguous']['value'])} / {fmt(split[m]['unambiguous']['value'])}" for m in cols) + " |")
    passes = summary["methods"].get("copy", {}).get("passes")
    if passes:
        lines += ["", f"Copied inputs that pass: {passes['total']} of {summary['n']}: {passes['true_states_unchanged']} "
                  f"because the pair's true states show no change ({passes['pairs_with_unchanged_true_states']} such "
                  f"pairs in all), {passes['reader_errors']} reader errors."]
    if summary.get("model_resolution"):
        lines += ["", f"The model generates at {summary['model_resolution']} px; its frames are resized to the "
                  "input's size before scoring."]
    if summary.get("sampling"):
        sp = summary["sampling"]
        lines += ["", f"Sampling: {sp['num_inference_steps']} steps, image guidance {sp['image_guidance_scale']}, text "
                  f"guidance {sp['guidance_scale']} on the steps' fraction {tuple(sp['guidance_interval'])}."]
    lines += ["", "![grid](grid.png)", "", f"Command: `{eval_world_command(config)}`"]
    with open(os.path.join(config.out, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    write_grid(samples[:8], os.path.join(config.out, "grid.png"), [m for m in config.methods if m != "copy"])


def eval_world_command(config: EvalWorldConfig) -> str:
    """The command line that reproduces this run."""
    parts = [f"egoframe eval-world --model {config.model} --world-seed {config.world_seed} --videos {config.videos}",
             f"--n {config.n}"]
    if config.split != "test":
        parts.append(f"--split {config.split}")
    if tuple(config.methods) != METHODS:
        parts.append("--methods " + ",".join(config.methods))
    if config.steps is not None:
        parts.append(f"--steps {config.steps}")
    if config.guidance_scale is not None:
        parts.append(f"--guidance-scale {config.guidance_scale:g}")
    if config.image_guidance_scale is not None:
        parts.append(f"--image-guidance-scale {config.image_guidance_scale:g}")
    if config.guidance_interval is not None:
        parts.append("--guidance-interval " + ",".join(f"{x:g}" for x in config.guidance_interval))
    if config.seed:
        parts.append(f"--seed {config.seed}")
    parts.append(f"--out {config.out}")
    return " ".join(parts)


def write_grid(samples, path: str, methods: list[str], cell: int = 128) -> None:
    """Rows: input | each generated method | target, with the action above each row."""
    image_grid([(s.action, [s.input, *[s.generated[m] for m in methods], s.target]) for s in samples],
               ["input", *methods, "target"], path, cell)


__all__ = ["ALL_METHODS", "EvalWorldConfig", "METHODS", "run_eval_world", "write_grid"]
