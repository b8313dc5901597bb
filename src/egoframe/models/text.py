"""ψ: the frozen CLIP text encoder, and tokenizers for it.

CLIP text encoders see a fixed window (77 tokens for SD 1.5). A longer enriched description is handled
on purpose (REFERENCE.md, metric pitfalls): by default it is cut to the window while keeping the
end-of-text token last, because CLIP was trained with EOT closing every sequence; ``long_text="error"``
refuses it instead. The cut is reported through a warning, never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)

LONG_TEXT_POLICIES = ("truncate", "error")


def tokenize(tokenizer, texts: Sequence[str], long_text: str = "truncate") -> tuple[torch.Tensor, list[int]]:
    """Token ids (B, max_length) padded with the pad token, each row ending in EOT before padding.

    Returns the ids and, per text, how many content tokens were cut (0 when it fit).
    """
    if long_text not in LONG_TEXT_POLICIES:
        raise ValueError(f"long_text must be one of {LONG_TEXT_POLICIES}, got {long_text!r}")
    max_length = tokenizer.model_max_length
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-text token")
    pad = eos if pad is None else pad
    rows, cut = [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        room = max_length - 1 - (bos is not None)
        over = max(0, len(ids) - room)
        if over:
            if long_text == "error":
                from egoframe.errors import InputError

                raise InputError(
                    f"text is {len(ids)} tokens, the text encoder takes {room}: shorten it "
                    f"or use long_text='truncate' ({text[:40]!r}...)"
                )
            logger.warning(
                "text of %d tokens cut to the text encoder's %d (end-of-text token kept): %r",
                len(ids), room, text[:60],
            )
            ids = ids[:room]
        row = ([bos] if bos is not None else []) + ids + [eos]
        row += [pad] * (max_length - len(row))
        rows.append(row)
        cut.append(over)
    return torch.tensor(rows, dtype=torch.long), cut


@torch.no_grad()
def encode_text(tokenizer, text_encoder, texts: Sequence[str], long_text: str = "truncate") -> torch.Tensor:
    """ψ(texts): last hidden states of the text encoder, (B, max_length, D)."""
    ids, _ = tokenize(tokenizer, texts, long_text=long_text)
    ids = ids.to(text_encoder.device)
    return text_encoder(ids)[0]


# A kitchen vocabulary for the tiny CLIP-format tokenizer of the embedded default. Words outside it
# still tokenize (byte-level characters are always in the vocabulary), just into more pieces.
TINY_VOCABULARY = """
a an the of to in on at from into onto with by and or its his her their
person camera wearer hand hands left right both centre center middle front back top bottom near far
take takes taking took put puts putting open opens opening close closes closing cut cuts cutting
pour pours pouring turn turns turning on off wash washes hold holds holding grab grabs pick picks up down
move moves moving place places placing slice slices lift lifts reach reaches push pushes pull pulls
cup cups bowl bowls knife knives tomato tomatoes drawer drawers tap taps board cutting plate plates
counter table sink spoon pan pot water bottle lid jar bread onion carrot
red green blue yellow orange purple white black brown pink grey gray
it them this that there here side edge piece pieces half halves empty full
""".split()


def build_tiny_clip_tokenizer(words: Sequence[str] = TINY_VOCABULARY, model_max_length: int = 77):
    """A real ``CLIPTokenizer`` (same class and file format as SD 1.5's) with a small vocabulary.

    The vocabulary is every byte-level character (alone and word-final) plus merge chains that make
    each given word a single token, so any text tokenizes and the kitchen words stay short.
    """
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    words = list(dict.fromkeys(w.lower() for w in words))
    # Learn the merges with a real BPE trainer: its merges are applied at encoding time in the order
    # they were learnt, so every training word comes out as one token (hand-made chains collide).
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=specials[1]))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    alphabet = _byte_level_alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(specials) + 2 * len(alphabet) + 8 * sum(len(w) for w in words),
        special_tokens=specials,
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        min_frequency=1,
        show_progress=False,
    )
    bpe.train_from_iterator(words, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(state["vocab"])
    for char in alphabet:  # word-final forms of every character, so no text maps to unk
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _byte_level_alphabet() -> list[str]:
    # GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to code points >= 256.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars
