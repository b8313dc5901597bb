"""The real-model stages: papers/003 Part III's BLIP-2 captioner, spaCy nouns, Grounding DINO grounder, LLM picker
and GLIGEN replacer (Eq. 4-7, Fig. 6), and SmartEdit's object removal by diffusers' SD inpainting (papers/002
Fig. 1). The image models load local weights in their usual layout (:func:`require_pipeline_dir` and the
Hugging Face check name the layout and the flag when a directory is missing); the picker asks an
OpenAI-compatible server through the enrichment's ChatEnricher and SQLite journal."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from egoframe.data.records import ActionRecord
from egoframe.enrichment.journal import Journal
from egoframe.enrichment.openai_backend import ChatEnricher
from egoframe.errors import MissingWeightsError, ModelLoadError
from egoframe.evaluation.hf import load_pretrained, require_dir
from egoframe.siblings.reasoning import entity_nouns
from egoframe.siblings.synthesis.types import MASK_THRESHOLD, Detection, Frame, Pick, dilate, stable_index
from egoframe.utils.nlp import load_spacy
from egoframe.utils.safe_loading import pipeline_folders, weights_kwargs


# ------------------------------------------------------------------------------------- local weight directories


def _require_hf_dir(folder, what: str, example: str, flag: str) -> Path:
    """A Hugging Face model + processor directory: config, weights, tokenizer and the image processor's
    config (``preprocessor_config.json``, or ``processor_config.json`` as transformers 5 saves it)."""
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
    import torch  # lazy: torch is heavy and only the real models need it

    return torch.Generator().manual_seed(seed + stable_index(key, 2**31))


def _to_uint8(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A pipeline's (H, W, 3) float [0, 1] output, resized to (width, height), as uint8."""
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
        from transformers import Blip2ForConditionalGeneration, Blip2Processor  # lazy: heavy, real model only

        self.processor = _load_processor(Blip2Processor, path, "BLIP-2")
        self.model = load_pretrained(Blip2ForConditionalGeneration, path, "BLIP-2").to(device)
        self.device, self.max_new_tokens = device, max_new_tokens

    def caption(self, frame: Frame) -> str:
        import torch  # lazy: torch is heavy and only the real models need it

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
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor  # lazy: heavy, real model only

        self.processor = _load_processor(AutoProcessor, path, "Grounding DINO")
        self.model = load_pretrained(AutoModelForZeroShotObjectDetection, path, "Grounding DINO").to(device)
        self.device, self.box_threshold, self.text_threshold = device, box_threshold, text_threshold

    def ground(self, frame: Frame, nouns: Sequence[str]) -> list[Detection]:
        import torch  # lazy: torch is heavy and only the real models need it

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
        from diffusers import StableDiffusionGLIGENPipeline  # lazy: heavy, real model only

        self.pipe = _load_pipeline(StableDiffusionGLIGENPipeline, path, "GLIGEN", device)
        self.steps, self.guidance_scale, self.seed = steps, guidance_scale, seed
        self.keep_background = keep_background

    def replace(self, frame: Frame, pick: Pick) -> np.ndarray | None:
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


# ================================================================== SmartEdit copy-paste synthesis: removal


class DiffusersInpainter:
    """Object removal with diffusers' ``StableDiffusionInpaintPipeline`` from a local directory (e.g.
    stable-diffusion-v1-5/stable-diffusion-inpainting): the mask is dilated by ``dilate`` pixels, the frame is
    squared to ``size`` and back, and pixels outside the mask stay the input's."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu",
                 prompt: str = "an empty kitchen counter", steps: int = 30, guidance_scale: float = 7.5,
                 size: int = 512, seed: int = 0, dilate: int = 2):
        path = require_pipeline_dir(folder, "object removal (inpainting)",
                                    "stable-diffusion-v1-5/stable-diffusion-inpainting", "--inpaint")
        from diffusers import StableDiffusionInpaintPipeline  # lazy: heavy, real model only

        self.pipe = _load_pipeline(StableDiffusionInpaintPipeline, path, "SD inpainting", device)
        self.prompt, self.steps, self.guidance_scale = prompt, steps, guidance_scale
        self.size, self.seed, self.dilate = size, seed, dilate

    def remove(self, frame: Frame, object_id: str, alpha: np.ndarray) -> np.ndarray:
        height, width = frame.image.shape[:2]
        mask = dilate(alpha > MASK_THRESHOLD, self.dilate)
        square = Image.fromarray(frame.image).resize((self.size, self.size), Image.Resampling.BICUBIC)
        mask_image = Image.fromarray(mask.astype(np.uint8) * 255).resize((self.size, self.size),
                                                                          Image.Resampling.NEAREST)
        result = self.pipe(prompt=self.prompt, image=square, mask_image=mask_image, height=self.size,
                           width=self.size, num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                           generator=_generator(self.seed, frame.id), output_type="np").images[0]
        return np.where(mask[..., None], _to_uint8(result, (width, height)), frame.image)
