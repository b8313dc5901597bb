"""BLIP-B / BLIP-L (LEGO Table 1): caption the generated frame with BLIP, then text-text similarity between
the caption and the enriched description.

Li, Li, Xiong, Hoi, "BLIP: Bootstrapping Language-Image Pre-training", ICML 2022; the B / L variants are
Salesforce/blip-image-captioning-base and -large (``BlipForConditionalGeneration``), loaded from a local
directory. Captions are decoded greedily (deterministic) with at most ``max_new_tokens`` tokens and no text
prompt unless one is given; images are preprocessed from the directory's ``preprocessor_config.json``
(384 px bicubic, CLIP mean/std for the public checkpoints). The similarity model is :class:`SentenceEmbedder`.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from egoframe.errors import InputError
from egoframe.evaluation.hf import ImagePreprocessor, load_pretrained, require_dir
from egoframe.evaluation.images import ImageLike
from egoframe.evaluation.text import SentenceEmbedder


class BlipCaptioner:
    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu", max_new_tokens: int = 30,
                 prompt: str = "", flag: str = "--blip-b"):
        from transformers import AutoTokenizer, BlipForConditionalGeneration

        path = require_dir(folder, "BLIP", "BLIP captioning (e.g. Salesforce/blip-image-captioning-base)", flag,
                           needs_tokenizer=True, needs_preprocessor=True)
        self.model = load_pretrained(BlipForConditionalGeneration, path, "BLIP").to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.preprocess = ImagePreprocessor.from_dir(path)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt

    def caption(self, images: Sequence[ImageLike], batch_size: int = 8) -> list[str]:
        import torch

        captions: list[str] = []
        for start in range(0, len(images), batch_size):
            pixels = self.preprocess(images[start:start + batch_size]).to(self.device)
            kwargs = {}
            if self.prompt:
                tokens = self.tokenizer([self.prompt] * len(pixels), return_tensors="pt")
                kwargs = {"input_ids": tokens["input_ids"].to(self.device),
                          "attention_mask": tokens["attention_mask"].to(self.device)}
            with torch.no_grad():
                ids = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          num_beams=1, **kwargs)
            captions += [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return captions


def blip_similarity(captioner: BlipCaptioner, embedder: SentenceEmbedder, images: Sequence[ImageLike],
                    descriptions: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per-sample cos(sentence(caption(image)), sentence(description)), and the captions."""
    if len(images) != len(descriptions):
        raise InputError(f"BLIP needs one description per image: {len(images)} vs {len(descriptions)}")
    if any(not d or not str(d).strip() for d in descriptions):
        raise InputError("BLIP similarity needs a non-empty enriched description for every sample")
    captions = captioner.caption(images)
    return embedder.similarity(captions, list(descriptions)), captions
