"""CLIP image-image (CLIP-I), CLIP image-text (CLIP-T) and DINO image-image cosine similarities.

- CLIP-I (LEGO Table 1 "CLIP"; ReasonPix2Pix "CLIP-I"): cosine of the projected CLIP image embeddings
  (``CLIPModel.get_image_features``) of the generated and the target frame (Radford et al., ICML 2021).
- CLIP-T (ReasonPix2Pix "CLIP-T"): cosine of the generated frame's image embedding and the text embedding.
- DINO (Caron et al., ICCV 2021; Oquab et al. 2023 for DINOv2; used as in DreamBooth / ReasonPix2Pix):
  cosine of the final-layer-normed CLS tokens of ``ViTModel`` (DINO) or ``Dinov2Model``.

All values are raw cosines in [-1, 1]; the papers print them x 100.

CLIP's text encoder has a 77-position window and pools the hidden state at the end-of-text (EOT) token.
Longer texts are handled on purpose (REFERENCE.md pitfall), never cut so that EOT is lost:

- ``long_text="truncate"`` (default): keep the first 75 content tokens, then BOS ... EOT;
- ``long_text="chunks"``: split the content into 75-token windows, encode each as BOS + window + EOT,
  average the L2-normalised window embeddings and renormalise.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from egoframe.errors import InputError
from egoframe.evaluation.hf import ImagePreprocessor, cosine_rows, load_pretrained, require_dir
from egoframe.evaluation.images import ImageLike

LONG_TEXT_MODES = ("truncate", "chunks")


class ClipScorer:
    """A local ``CLIPModel`` directory (e.g. openai/clip-vit-large-patch14 saved with ``save_pretrained``)."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu", long_text: str = "truncate",
                 what: str = "CLIP", needs_text: bool = False):
        from transformers import AutoTokenizer, CLIPModel

        if long_text not in LONG_TEXT_MODES:
            raise InputError(f"long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")
        path = require_dir(folder, what, "CLIP (e.g. openai/clip-vit-large-patch14)", "--clip",
                           needs_tokenizer=needs_text, needs_preprocessor=True)
        self.model = load_pretrained(CLIPModel, path, what).to(device)
        self.device = device
        self.preprocess = ImagePreprocessor.from_dir(path)
        self.long_text = long_text
        self.tokenizer = AutoTokenizer.from_pretrained(str(path)) if needs_text else None
        self.window = int(self.model.config.text_config.max_position_embeddings)

    def image_features(self, images: Sequence[ImageLike], batch_size: int = 32):
        import torch

        out = []
        for start in range(0, len(images), batch_size):
            pixels = self.preprocess(images[start:start + batch_size]).to(self.device)
            with torch.no_grad():
                out.append(_as_tensor(self.model.get_image_features(pixel_values=pixels)))
        return torch.cat(out)

    def text_token_windows(self, text: str) -> list[list[int]]:
        """The token id sequences fed to the text encoder for ``text``: each starts with BOS, ends with EOT."""
        if self.tokenizer is None:
            raise InputError("this CLIP scorer was built without its tokenizer (needs_text=False)")
        if not text.strip():
            raise InputError("CLIP-T needs a non-empty text")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        content = self.window - 2
        if self.long_text == "truncate" or len(ids) <= content:
            return [[bos] + ids[:content] + [eos]]
        return [[bos] + ids[i:i + content] + [eos] for i in range(0, len(ids), content)]

    def encode_windows(self, windows: list[list[int]]):
        """(len(windows), D) projected text embeddings of explicit token windows."""
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        length = max(len(w) for w in windows)
        ids = torch.full((len(windows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(windows), length), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, :len(window)] = torch.tensor(window)
            mask[row, :len(window)] = 1
        with torch.no_grad():
            return _as_tensor(self.model.get_text_features(input_ids=ids.to(self.device),
                                                           attention_mask=mask.to(self.device)))

    def text_features(self, texts: Sequence[str]):
        import torch

        rows = []
        for text in texts:
            feats = torch.nn.functional.normalize(self.encode_windows(self.text_token_windows(text)).double(), dim=-1)
            rows.append(torch.nn.functional.normalize(feats.mean(dim=0), dim=-1))
        return torch.stack(rows)

    def image_image(self, generated: Sequence[ImageLike], reference: Sequence[ImageLike]) -> np.ndarray:
        _same_length(generated, reference, "CLIP-I")
        return cosine_rows(self.image_features(generated), self.image_features(reference))

    def image_text(self, images: Sequence[ImageLike], texts: Sequence[str]) -> np.ndarray:
        _same_length(images, texts, "CLIP-T")
        return cosine_rows(self.image_features(images), self.text_features(texts))


class DinoScorer:
    """A local DINO ``ViTModel`` (facebook/dino-vits16 ...) or ``Dinov2Model`` (facebook/dinov2-base ...)."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu"):
        from transformers import AutoModel

        path = require_dir(folder, "DINO", "DINO ViT or DINOv2 (e.g. facebook/dino-vits16)", "--dino",
                           needs_preprocessor=True)
        self.model = load_pretrained(AutoModel, path, "DINO").to(device)
        kind = self.model.config.model_type
        if kind not in ("vit", "dinov2", "dinov2_with_registers", "dinov3_vit"):
            raise InputError(f"{path} holds a {kind} model; DINO needs a ViT (DINO) or DINOv2 directory")
        self.device = device
        self.preprocess = ImagePreprocessor.from_dir(path)

    def features(self, images: Sequence[ImageLike], batch_size: int = 32):
        import torch

        out = []
        for start in range(0, len(images), batch_size):
            pixels = self.preprocess(images[start:start + batch_size]).to(self.device)
            with torch.no_grad():
                hidden = self.model(pixel_values=pixels).last_hidden_state  # (B, 1 + N, D), final layer norm applied
            out.append(hidden[:, 0])
        return torch.cat(out)

    def image_image(self, generated: Sequence[ImageLike], reference: Sequence[ImageLike]) -> np.ndarray:
        _same_length(generated, reference, "DINO")
        return cosine_rows(self.features(generated), self.features(reference))


def _as_tensor(output):
    """transformers 5 may return a ModelOutput from get_*_features; take its pooled embedding."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise TypeError(f"unexpected CLIP output {type(output).__name__}")


def _same_length(a, b, what: str) -> None:
    if len(a) != len(b):
        raise InputError(f"{what} needs pairs: {len(a)} vs {len(b)}")
