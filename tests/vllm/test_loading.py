"""A tiny random LLaVA saved in the llava-hf layout loads through the same function as llava-1.5-7b-hf."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from egoframe.errors import ModelLoadError
from egoframe.vllm.model import load_vllm


def _save_llava_hf_like(out: str) -> None:
    """Build with plain transformers classes (as llava-hf's conversion script does), not with our builder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.train_from_iterator(["USER: what happens here? ASSISTANT: the person takes the cup"] * 4,
                             trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.add_tokens(["<image>"], special_tokens=True)  # llava-hf adds <image> as id 32000 the same way
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=28, patch_size=14, projection_dim=16),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=4)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    # A real llava-1.5 download names the torchvision-backed class; it must load without torchvision too.
    path = os.path.join(out, "preprocessor_config.json")
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
        data["image_processor_type"] = "CLIPImageProcessor"
        with open(path, "w") as f:
            json.dump(data, f)


@pytest.fixture(scope="module")
def llava_hf_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("llava-hf"))
    _save_llava_hf_like(out)
    return out


def test_llava_hf_layout_loads_and_embeds(llava_hf_dir):
    from egoframe.vllm.embeddings import ExtractionConfig, extract_vllm_embeddings

    vllm = load_vllm(llava_hf_dir)
    assert type(vllm.model).__name__ == "LlavaForConditionalGeneration"
    assert vllm.n_image_tokens == 4 and vllm.d_llm == 16
    image = np.zeros((40, 30, 3), dtype=np.uint8)  # any size: the processor resizes and crops
    emb = extract_vllm_embeddings(vllm, [image], ["take cup"], ExtractionConfig(max_new_tokens=5))
    assert emb.image_tokens.shape == (1, 4, 16)
    assert emb.text_tokens.shape == (1, 77, 16)
    assert 1 <= int(emb.text_mask.sum()) <= 5


def test_identity_is_stable_across_save_and_load(tiny_vllm, tiny_vllm_dir):
    loaded = load_vllm(tiny_vllm_dir)
    assert loaded.identity() == tiny_vllm.identity()
    with torch.no_grad():
        loaded.model.model.multi_modal_projector.linear_1.weight[0, 0].add_(1e-3)  # the tiny projector has no bias
    loaded.forget_identity()
    assert loaded.identity() != tiny_vllm.identity()


def test_identity_before_save_equals_identity_after_load(tiny_vllm, tmp_path):
    from egoframe.vllm.tiny import build_tiny_vllm
    from tests.vllm.vllm_testdata import tiny_config

    fresh = build_tiny_vllm(tiny_vllm.tokenizer, tiny_config(), seed=1)
    before = fresh.identity()  # save_pretrained fills in config keys (architectures) that must not count
    fresh.save_pretrained(str(tmp_path))
    assert load_vllm(str(tmp_path)).identity() == before != tiny_vllm.identity()


def test_missing_dir(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_vllm(str(tmp_path / "nope"))


def test_not_a_llava(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="not a LLaVA"):
        load_vllm(str(tmp_path))


def test_missing_processor(tiny_vllm, tmp_path):
    tiny_vllm.model.save_pretrained(str(tmp_path))
    with pytest.raises(ModelLoadError, match="processor"):
        load_vllm(str(tmp_path))


def test_processor_that_does_not_fit(tiny_vllm_dir, tmp_path):
    import shutil

    target = tmp_path / "m"
    shutil.copytree(tiny_vllm_dir, target)
    for name in ("processor_config.json", "preprocessor_config.json"):
        path = target / name
        if path.exists():
            text = path.read_text().replace('"height": 32', '"height": 48').replace('"width": 32', '"width": 48')
            path.write_text(text)
    with pytest.raises(ModelLoadError, match="crops to 48"):
        load_vllm(str(target))


def test_processor_token_count_mismatch(llava_hf_dir, tmp_path):
    import shutil

    target = tmp_path / "m"
    shutil.copytree(llava_hf_dir, target)
    path = target / "processor_config.json"
    path.write_text(path.read_text().replace('"num_additional_image_tokens": 1', '"num_additional_image_tokens": 0'))
    with pytest.raises(ModelLoadError, match="expands <image> into 3 tokens"):
        load_vllm(str(target))
