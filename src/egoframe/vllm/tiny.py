"""The embedded default VLLM: a tiny LLaVA built in code and trained from scratch on CPU.

Same classes as a real llava-1.5 (CLIP vision tower -> 2-layer MLP projector -> Llama), only small, with a
word-level tokenizer trained on the data set's own descriptions and questions. Because it is a genuine
``LlavaForConditionalGeneration`` + ``LlavaProcessor``, everything downstream (training, describe, embeddings,
the cache) runs the same code for it as for llava-hf/llava-1.5-7b-hf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from egoframe.errors import ConfigError
from egoframe.vllm.model import Vllm
from egoframe.vllm.templates import QUESTION_TEMPLATES, prompt_for

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")


@dataclass
class TinyVllmConfig:
    image_size: int = 64
    patch_size: int = 16  # -> 16 image tokens at 64 px (measured better and 3x faster than 8 -> 64 tokens)
    vision_hidden_size: int = 96
    vision_layers: int = 3  # LLaVA reads the penultimate layer, so the last one only trains through CLS
    vision_heads: int = 4
    text_hidden_size: int = 128
    text_layers: int = 2
    text_heads: int = 4
    max_positions: int = 256
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    # Without biases the projector cannot turn the image tokens into a constant prefix that the LM reads
    # instead of the picture (measured: with biases, trained image tokens had 15x the norm of word embeddings
    # and varied little between frames).
    projector_bias: bool = False


def build_word_tokenizer(texts: Iterable[str]):
    """A lower-cased word-level fast tokenizer over ``texts``, with LLaVA's special tokens.

    Built with the ``tokenizers`` library and wrapped as a ``PreTrainedTokenizerFast`` so that
    ``save_pretrained``/``AutoTokenizer.from_pretrained`` round-trip it.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from collections import Counter

    splitter = Tokenizer(models.WordLevel(unk_token="<unk>"))
    splitter.normalizer = normalizers.Lowercase()
    # Whitespace splits punctuation off words; the WordPiece decoder's cleanup glues it back ("cup ." -> "cup.").
    splitter.pre_tokenizer = pre_tokenizers.Whitespace()
    # The vocabulary is built here rather than by `trainers.WordLevelTrainer`, whose order among words of equal
    # count is an implementation detail: ids are by descending count, then alphabetical, in every process.
    counts: Counter[str] = Counter()
    for text in texts:
        normal = splitter.normalizer.normalize_str(text)
        counts.update(word for word, _ in splitter.pre_tokenizer.pre_tokenize_str(normal))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    core.add_special_tokens(list(SPECIAL_TOKENS))
    bos = core.token_to_id("<s>")
    # A leading <s>, as Llama tokenizers add; answers are encoded without it.
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"}, padding_side="right", model_max_length=1024)


def tokenizer_corpus(descriptions: Iterable[str], actions: Iterable[str]) -> list[str]:
    """Every text the tiny model must spell: descriptions, all question templates for every action, the prompt."""
    texts = list(descriptions)
    for action in sorted(set(actions)):
        texts.extend(prompt_for(action, t) for t in range(len(QUESTION_TEMPLATES)))
    return texts


def build_tiny_vllm(tokenizer, config: TinyVllmConfig | None = None, seed: int = 0) -> Vllm:
    """A randomly initialised tiny LLaVA with a processor around ``tokenizer``."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    config = config or TinyVllmConfig()
    if config.image_size % config.patch_size:
        raise ConfigError(f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}")
    n_image_tokens = (config.image_size // config.patch_size) ** 2
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden_size, intermediate_size=4 * config.vision_hidden_size,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
        image_size=config.image_size, patch_size=config.patch_size, projection_dim=config.vision_hidden_size)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.text_hidden_size,
        intermediate_size=4 * config.text_hidden_size, num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads, num_key_value_heads=config.text_heads,
        max_position_embeddings=config.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    llava_config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=n_image_tokens, vision_feature_layer=-2, vision_feature_select_strategy="default",
        multimodal_projector_bias=config.projector_bias)
    llava_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": config.image_size}, crop_size={"height": config.image_size, "width": config.image_size},
        image_mean=list(config.image_mean), image_std=list(config.image_std))
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=config.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return Vllm(model=model.eval(), processor=processor)
