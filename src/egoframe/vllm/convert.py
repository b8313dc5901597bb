"""An original-layout LLaVA checkpoint (the haotian-liu/LLaVA repository's, as LEGO's VLLM is released) to
the llava-hf layout :func:`egoframe.vllm.model.load_vllm` reads.

The original layout is a ``LlavaLlamaForCausalLM`` folder: a Llama ``config.json`` with ``mm_*`` fields, the
Llama tokenizer, and weights named ``model.layers.*``, ``model.embed_tokens``, ``model.norm``, ``lm_head``,
``model.mm_projector.{0,2}`` (``mlp2x_gelu``) or ``model.mm_projector`` (``linear``), and usually no vision
tower: LLaVA loads the CLIP tower named by ``mm_vision_tower`` separately, so it is given here as a local
CLIP directory. The renaming follows the key mapping of transformers' ``convert_llava_weights_to_hf.py``
(``model.mm_projector.0`` -> ``multi_modal_projector.linear_1``, ``model.vision_tower.vision_tower.`` -> the
tower, the Llama under ``language_model``), written for transformers >= 5's module names, which this
transformers no longer ships as a script. As in that script, ``<image>`` (and ``<pad>`` when the tokenizer has
none) is added to the vocabulary and the new embedding rows start at the mean of the others: the original
code marks the image with the id -200 instead of a vocabulary entry.

A ``linear`` projector becomes llava-hf's two-layer projector with an identity activation and an identity
second layer, so it computes exactly the same. Pickle weights (``pytorch_model-*.bin``, ``mm_projector.bin``)
are read with :func:`egoframe.utils.safe_loading.read_pickle_tensors`, which runs no code from the file.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from egoframe.errors import InputError, ModelLoadError
from egoframe.utils.safe_loading import read_pickle_tensors
from egoframe.vllm.model import Vllm, check_processor_fits, parse_dtype, quiet_transformers, read_config_json

# (original name pattern, llava-hf name) for transformers 5's LlavaForConditionalGeneration.
KEY_MAPPING: tuple[tuple[str, str], ...] = (
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "model.vision_tower.vision_model."),  # see _tower_names
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.mm_projector\.(weight|bias)$", r"model.multi_modal_projector.linear_1.\1"),  # "linear"
    (r"^model\.(embed_tokens|layers|norm)\.", r"model.language_model.\1."),
    (r"^lm_head\.", "lm_head."),
)
_DROPPED = re.compile(r"(rotary_emb\.inv_freq|position_ids)$")
_PROJECTORS = ("mlp2x_gelu", "linear")


def map_original_key(key: str) -> str | None:
    """The llava-hf name of an original-layout weight; None for buffers that are not weights."""
    if _DROPPED.search(key):
        return None
    for pattern, target in KEY_MAPPING:
        if re.search(pattern, key):
            return re.sub(pattern, target, key)
    raise ModelLoadError(f"unexpected weight {key!r} in an original-layout LLaVA checkpoint")


def read_original_weights(src: str) -> dict:
    """Every tensor of the folder's ``*.safetensors`` or, when it has none, its ``*.bin`` files (no unpickling)."""
    from safetensors.torch import load_file

    files = sorted(glob.glob(os.path.join(src, "*.safetensors")))
    reader = load_file
    if not files:
        files, reader = sorted(glob.glob(os.path.join(src, "*.bin"))), read_pickle_tensors
    if not files:
        raise ModelLoadError(f"{src} has no weights (*.safetensors or pytorch_model*.bin)")
    state: dict = {}
    for path in files:
        try:
            state.update(reader(path))
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt shard: name it, one line
            raise ModelLoadError(f"cannot read {path}: {str(exc).splitlines()[0][:200]}") from None
    return state


def _read_config(src: str) -> dict[str, Any]:
    config = read_config_json(src, "an original-layout LLaVA folder")
    if config.get("model_type") == "llava" and "text_config" in config:
        raise InputError(f"{src} is already in the llava-hf layout: load it directly")
    if "mm_hidden_size" not in config:
        raise ModelLoadError(f"{src}/config.json has no mm_* fields: not an original-layout LLaVA (LlavaLlamaForCausalLM)")
    if config.get("mm_use_im_start_end"):
        raise InputError(f"{src} uses <im_start>/<im_end> image tokens (mm_use_im_start_end), which llava-hf's "
                         "LlavaForConditionalGeneration does not have")
    projector = config.get("mm_projector_type", "linear")
    if projector not in _PROJECTORS:
        raise InputError(f"{src}: projector {projector!r} is not supported (use one of {', '.join(_PROJECTORS)})")
    return config


def _vision_tower(vision_tower: str):
    """The CLIP vision config, weights (``vision_model.*``) and image processor of a local CLIP folder."""
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, CLIPVisionConfig

    if not vision_tower or not os.path.isdir(vision_tower):
        raise ModelLoadError(f"vision tower folder {vision_tower!r} does not exist: pass a local CLIP directory "
                             "(the checkpoint's mm_vision_tower, e.g. a download of openai/clip-vit-large-patch14)")
    try:
        config = CLIPVisionConfig.from_pretrained(vision_tower, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(vision_tower, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the CLIP config / image processor in {vision_tower}: "
                             f"{str(exc).splitlines()[0][:200]}") from None
    files = sorted(glob.glob(os.path.join(vision_tower, "*.safetensors")))
    if not files:
        raise ModelLoadError(f"{vision_tower} has no *.safetensors weights")
    weights = {}
    for path in files:
        for key, value in load_file(path).items():
            if key.startswith("vision_model."):  # CLIPModel / CLIPVisionModel as published
                weights[key[len("vision_model."):]] = value
            elif key.split(".")[0] in _TOWER_PARTS:  # CLIPVisionModel as transformers >= 5 saves it
                weights[key] = value
    if not weights:
        raise ModelLoadError(f"{vision_tower}'s weights have no vision_model.* tensors: not a CLIP vision tower")
    return config, weights, processor


_TOWER_PARTS = ("embeddings", "pre_layrnorm", "encoder", "post_layernorm")


def _tower_names(mapped: dict, expected: set[str]) -> dict:
    """Put the tower's weights under the names this transformers gives LLaVA's tower: ``model.vision_tower.*``
    with or without the ``vision_model.`` level (transformers 5 dropped it)."""
    nested = any(k.startswith("model.vision_tower.vision_model.") for k in expected)
    out = {}
    for key, value in mapped.items():
        if key.startswith("model.vision_tower."):
            rest = key[len("model.vision_tower."):]
            rest = rest[len("vision_model."):] if rest.startswith("vision_model.") else rest
            key = "model.vision_tower." + ("vision_model." if nested else "") + rest
        out[key] = value
    return out


def convert_original_llava(src: str, vision_tower: str, out: str, dtype: str | None = None) -> dict[str, Any]:
    """Write ``out`` (llava-hf layout, safetensors) from the original-layout LLaVA in ``src`` and the CLIP tower
    in ``vision_tower``; returns a summary. Raises one-line :class:`ModelLoadError` / :class:`InputError`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    config = _read_config(src)
    state = read_original_weights(src)
    vision_config, tower_weights, image_processor = _vision_tower(vision_tower)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the tokenizer in {src}: {str(exc).splitlines()[0][:200]}") from None
    added = tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]}
                                         if "<image>" not in tokenizer.get_vocab() else {})
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": "<pad>"})

    mapped = {}
    for key, tensor in state.items():
        name = map_original_key(key)
        if name is not None:
            mapped[name] = tensor
    if not any(k.startswith("model.vision_tower.") for k in mapped):  # LLaVA kept the CLIP tower frozen, apart
        mapped.update({f"model.vision_tower.{k}": v for k, v in tower_weights.items()})
    projector = config.get("mm_projector_type", "linear")
    text_width = int(config["hidden_size"])
    if projector == "linear":  # linear_2 = identity, activation = identity: the same map as one Linear
        reference = mapped["model.multi_modal_projector.linear_1.weight"]
        mapped["model.multi_modal_projector.linear_2.weight"] = torch.eye(text_width, dtype=reference.dtype)
        mapped["model.multi_modal_projector.linear_2.bias"] = torch.zeros(text_width, dtype=reference.dtype)

    text_fields = {k: config[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                          "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                          "rms_norm_eps", "rope_theta", "hidden_act", "tie_word_embeddings",
                                          "attention_bias") if k in config}
    if "rope_theta" in text_fields:
        text_fields["rope_parameters"] = {"rope_type": "default", "rope_theta": text_fields.pop("rope_theta")}
    old_vocab = int(text_fields.get("vocab_size", len(tokenizer) - added))
    text_fields["vocab_size"] = max(old_vocab, len(tokenizer))
    text_config = LlamaConfig(**text_fields, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id)
    select = config.get("mm_vision_select_feature", "patch")
    strategy = "default" if select == "patch" else "full"  # "patch" drops CLS, "cls_patch" keeps it
    n_patches = (vision_config.image_size // vision_config.patch_size) ** 2
    llava_config = LlavaConfig(
        vision_config=vision_config, text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=n_patches + (1 if strategy == "full" else 0),
        vision_feature_layer=int(config.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy=strategy,
        projector_hidden_act="gelu" if projector == "mlp2x_gelu" else "linear",
        multimodal_projector_bias="model.multi_modal_projector.linear_1.bias" in mapped)
    llava_config.pad_token_id = tokenizer.pad_token_id
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config)
    # New vocabulary rows (<image>, <pad>) start at the mean of the trained rows (transformers' conversion script).
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if name in mapped and mapped[name].shape[0] < text_fields["vocab_size"]:
            rows = mapped[name]
            extra = rows.float().mean(0, keepdim=True).to(rows.dtype).expand(text_fields["vocab_size"] - rows.shape[0], -1)
            mapped[name] = torch.cat([rows, extra])
    if text_fields.get("tie_word_embeddings"):
        mapped.pop("lm_head.weight", None)
    expected = set(model.state_dict())  # the meta model: names and shapes only, no memory
    mapped = _tower_names(mapped, expected)
    missing = sorted(expected - set(mapped) - ({"lm_head.weight"} if text_fields.get("tie_word_embeddings") else set()))
    unexpected = sorted(set(mapped) - expected)
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelLoadError(f"{src}'s weights do not fit its config: {what}")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [k for k, v in mapped.items() if tuple(v.shape) != shapes[k]]
    if wrong:
        raise ModelLoadError(f"{src}'s weights do not fit its config: {wrong[0]} is {tuple(mapped[wrong[0]].shape)}, "
                             f"the config wants {shapes[wrong[0]]}")
    target = parse_dtype(dtype)
    if target is not None:
        mapped = {k: v.to(target) if v.is_floating_point() else v for k, v in mapped.items()}
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=vision_config.patch_size, vision_feature_select_strategy=strategy,
                               num_additional_image_tokens=1)
    vllm = Vllm(model=model, processor=processor)
    check_processor_fits(vllm, src)
    # Written as files, never materialised as a second model in memory (a 13B LLaVA is 26 GB in fp16):
    # the config, safetensors shards with their index, the processor.
    from huggingface_hub import save_torch_state_dict

    os.makedirs(out, exist_ok=True)
    llava_config.architectures = ["LlavaForConditionalGeneration"]
    with quiet_transformers():
        llava_config.save_pretrained(out)
        model.generation_config.save_pretrained(out)
        processor.save_pretrained(out)
    save_torch_state_dict({k: v.contiguous() for k, v in mapped.items()}, out, max_shard_size="5GB")
    return {"out": out, "projector": projector, "image_tokens": llava_config.image_seq_length,
            "d_llm": text_width,
            "added_tokens": added, "vision_tower_from": "checkpoint" if any(
                k.startswith("model.vision_tower.") for k in state) else vision_tower,
            "aspect_ratio": config.get("image_aspect_ratio", "square")}
