"""A LLaVA model and its processor, loaded from a local llava-hf style directory.

One loader, :func:`load_vllm`, serves a real ``llava-hf/llava-1.5-7b-hf`` download, a checkpoint written by
``egoframe vllm train`` and the tiny embedded model alike: all are ``LlavaForConditionalGeneration`` weights
(``config.json`` + ``*.safetensors``) next to a ``LlavaProcessor`` (image processor + tokenizer files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from egoframe.errors import ModelLoadError
from egoframe.utils.safe_loading import PICKLE_SUFFIXES, check_weights, pickle_allowed, weights_kwargs

if TYPE_CHECKING:
    import torch
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


@dataclass
class Vllm:
    """A LLaVA model with the processor that prepares its inputs."""

    model: "LlavaForConditionalGeneration"
    processor: "LlavaProcessor"
    _identity: str | None = field(default=None, repr=False)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> "torch.dtype":
        return next(self.model.parameters()).dtype

    @property
    def d_llm(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def n_image_tokens(self) -> int:
        """Image tokens per frame: the vision tower's patches; the "full" strategy also keeps CLS."""
        vision = self.model.config.vision_config
        n_patches = (vision.image_size // vision.patch_size) ** 2
        return n_patches + 1 if self.model.config.vision_feature_select_strategy == "full" else n_patches

    def identity(self) -> str:
        """sha256 of the model config and every weight: two VLLMs share it only if they compute the same."""
        if self._identity is None:
            self._identity = weights_identity(self.model)
        return self._identity

    def forget_identity(self) -> None:
        """Call after changing the weights in place (training) so that :meth:`identity` is recomputed."""
        self._identity = None

    def save_pretrained(self, out_dir: str) -> None:
        """Write model + processor in the llava-hf layout that :func:`load_vllm` reads."""
        os.makedirs(out_dir, exist_ok=True)
        with quiet_transformers():
            self.model.save_pretrained(out_dir)
            self.processor.save_pretrained(out_dir)


def weights_identity(model: Any) -> str:
    """sha256 over the model's config (as sorted JSON) and the bytes of every tensor of its state dict."""
    import torch

    digest = hashlib.sha256()
    digest.update(json.dumps(_stable_config(model.config.to_dict()), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "torch_dtype", "dtype", "architectures")


def _stable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config without keys that save/load changes but the computation ignores (the weights carry dtype;
    save_pretrained fills in `architectures`)."""
    return {k: _stable_config(v) if isinstance(v, dict) else v
            for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}


def parse_dtype(dtype: "str | torch.dtype | None"):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use one of {', '.join(table)}")
    return table[dtype]


@contextlib.contextmanager
def quiet_transformers():
    """No transformers progress bars or warnings while loading/saving (the CLI shows its own progress)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def read_config_json(folder: str, kind: str) -> dict[str, Any]:
    """``folder/config.json`` as a dict; a missing or unreadable file is a one-line :class:`ModelLoadError`
    saying the folder is not ``kind``."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise ModelLoadError(f"{folder} has no config.json: not {kind}")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON: {exc}") from None


def check_vllm_dir(model_dir: str, allow_pickle: bool | None = None) -> dict[str, Any]:
    """Check that ``model_dir`` looks like a llava-hf directory; return its config.json contents."""
    if not model_dir or not os.path.isdir(model_dir):
        raise ModelLoadError(f"VLLM directory {model_dir!r} does not exist: pass a local llava-hf style directory "
                             "(e.g. a download of llava-hf/llava-1.5-7b-hf or the output of `egoframe vllm train`)")
    config = read_config_json(model_dir, "a transformers model directory")
    if config.get("model_type") != "llava":
        raise ModelLoadError(f"{model_dir} holds a {config.get('model_type')!r} model, not a LLaVA "
                             "(model_type 'llava', LlavaForConditionalGeneration)")
    names = set(os.listdir(model_dir))
    check_weights(model_dir, allow_pickle=allow_pickle)  # a pickle-only checkpoint: named, unless allowed
    if not any(n.endswith(".safetensors") or (pickle_allowed(allow_pickle) and n.endswith(PICKLE_SUFFIXES))
               for n in names):
        raise ModelLoadError(f"{model_dir} has no *.safetensors weights")
    if not names.intersection(_PROCESSOR_FILES):
        raise ModelLoadError(f"{model_dir} has no processor_config.json/preprocessor_config.json: "
                             "save the LlavaProcessor next to the model")
    if not names.intersection(_TOKENIZER_FILES):
        raise ModelLoadError(f"{model_dir} has no tokenizer files (tokenizer.json or tokenizer.model)")
    return config


def load_vllm(model_dir: str, *, device: str | None = None, dtype: "str | torch.dtype | None" = None,
              allow_pickle: bool | None = None) -> Vllm:
    """Load a LLaVA (model + processor) from a local llava-hf style directory.

    ``dtype`` defaults to the one the weights were saved in; ``device`` to CPU. Raises
    :class:`~egoframe.errors.ModelLoadError` with a one-line reason for anything that is not such a directory.
    Weights are safetensors only unless ``allow_pickle`` (None: ``EGOFRAME_ALLOW_PICKLE``).
    """
    check_vllm_dir(model_dir, allow_pickle=allow_pickle)
    weights = weights_kwargs(allow_pickle=allow_pickle)
    torch_dtype = parse_dtype(dtype)
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    try:
        with quiet_transformers():
            model = LlavaForConditionalGeneration.from_pretrained(
                model_dir, dtype=torch_dtype if torch_dtype is not None else "auto", local_files_only=True,
                **weights)
            processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load the LLaVA in {model_dir}: {first}") from None
    if device is not None:
        model = model.to(device)
    model.eval()
    vllm = Vllm(model=model, processor=processor)
    check_processor_fits(vllm, model_dir)
    return vllm


def check_processor_fits(vllm: Vllm, where: str = "the VLLM") -> None:
    """The processor must expand ``<image>`` into exactly as many tokens as the vision tower yields."""
    processor, config = vllm.processor, vllm.model.config
    if type(processor).__name__ != "LlavaProcessor":
        raise ModelLoadError(f"{where}: expected a LlavaProcessor, found {type(processor).__name__}")
    crop = getattr(processor.image_processor, "crop_size", None)
    size = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", None)
    if size is not None and size != config.vision_config.image_size:
        raise ModelLoadError(f"{where}: the image processor crops to {size} px but the vision tower expects "
                             f"{config.vision_config.image_size} px")
    if processor.patch_size is not None and processor.patch_size != config.vision_config.patch_size:
        raise ModelLoadError(f"{where}: processor patch size {processor.patch_size} != vision tower patch size "
                             f"{config.vision_config.patch_size}")
    if size is not None and processor.patch_size:
        expands_to = (size // processor.patch_size) ** 2 + (processor.num_additional_image_tokens or 0)
        if processor.vision_feature_select_strategy == "default":
            expands_to -= 1
        if expands_to != vllm.n_image_tokens:
            raise ModelLoadError(f"{where}: the processor expands <image> into {expands_to} tokens but the vision "
                                 f"tower yields {vllm.n_image_tokens} (check num_additional_image_tokens and "
                                 "vision_feature_select_strategy in processor_config.json)")
    if processor.image_token_id != config.image_token_id:
        raise ModelLoadError(f"{where}: the tokenizer's image token id {processor.image_token_id} differs from the "
                             f"model's image_token_id {config.image_token_id}")
