"""Tiny random models in the real Hugging Face / public-checkpoint layouts, saved to a folder."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

LETTERS = string.ascii_lowercase


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in LETTERS:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def _preprocessor(folder: Path, size: int, crop: int | None = None, resample: int = 3) -> None:
    config = {"do_resize": True, "size": {"shortest_edge": size}, "resample": resample, "do_normalize": True,
              "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
              "do_rescale": True, "rescale_factor": 1 / 255}
    if crop:
        config.update(do_center_crop=True, crop_size={"height": crop, "width": crop})
    (folder / "preprocessor_config.json").write_text(json.dumps(config))


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _preprocessor(folder, 32, crop=32)
    return folder


def save_tiny_dinov2(folder: Path, seed: int = 0) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          image_size=28, patch_size=14)
    Dinov2Model(config).eval().save_pretrained(folder)
    _preprocessor(folder, 32, crop=28)
    return folder


def save_tiny_vit(folder: Path, seed: int = 0) -> Path:
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=8)
    ViTModel(config, add_pooling_layer=False).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 2, "do_normalize": True,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    return folder


def bert_tokenizer(words=("cut", "tomato", "open", "drawer", "the", "knife", "a", "person", "holds")):
    from transformers import BertTokenizer

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, ".", ","])}
    return BertTokenizer(vocab=vocab)


def save_tiny_egovlp_pth(folder: Path, seed: int = 0, frames: int = 4) -> Path:
    """A tiny Frozen-in-Time checkpoint as the public ``egovlp.pth`` stores it: {'state_dict': {'module.' ...}}."""
    from egoframe.evaluation.egovlp import EgoVlpConfig, build_frozen_in_time

    torch.manual_seed(seed)
    tokenizer = bert_tokenizer()
    config = EgoVlpConfig(image_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4, mlp_hidden=64,
                          num_frames=frames, projection_dim=16, text_vocab_size=len(tokenizer), text_dim=32,
                          text_layers=2, text_heads=4, text_hidden=64, text_max_positions=64)
    model = build_frozen_in_time(config)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 10}, folder / "egovlp.pth")
    tokenizer.save_pretrained(folder)
    return folder / "egovlp.pth"


def save_tiny_blip(folder: Path, seed: int = 0) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration

    torch.manual_seed(seed)
    words = ("a", "person", "cuts", "tomato", "opens", "drawer", "the", "knife", "hand", "board")
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *words])}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                         bos_token_id=vocab["[DEC]"], pad_token_id=0, sep_token_id=vocab["[SEP]"],
                         eos_token_id=vocab["[SEP]"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3, "do_normalize": True,
         "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    return folder


def save_tiny_sentence_model(folder: Path, seed: int = 0) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = bert_tokenizer(("a", "person", "cuts", "tomato", "opens", "drawer", "the", "knife", "with"))
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                   "pooling_mode_mean_tokens": True}))
    return folder
