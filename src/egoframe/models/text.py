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

from egoframe.errors import InputError

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
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = _byte_level_alphabet()
    vocab: dict[str, int] = {}
    for token in specials + alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    merges = _learn_merges(dict.fromkeys(w.lower() for w in words))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _learn_merges(words) -> list[tuple[str, str]]:
    """Sennrich et al.'s BPE (2016, Alg. 1) on a word list until every word is one symbol.

    Deterministic on purpose (ties go to the lexicographically first pair): the vocabulary ids, and so
    the text encoder's embedding rows, must not change between runs with the same seed. Merges are
    learnt in the order encoding applies them, so each listed word encodes as a single token.
    """
    from collections import Counter

    symbols = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words if w}
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for seq in symbols.values() for pair in zip(seq, seq[1:]))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for word, seq in symbols.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            symbols[word] = out


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
