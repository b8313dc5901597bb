"""Checks every answer must pass before it is stored: non-empty, one sentence, names the action's noun."""

from __future__ import annotations

import re

from egoframe.data.records import ActionRecord

# a sentence end followed by more text; "e.g." / "i.e." are masked first so that they do not count
_SENTENCE_BREAK = re.compile(r"[.!?](?:[\"')\]]*)\s+\S|\n\s*\S")
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|approx|vs)\.", re.IGNORECASE)
_LEADING_LABEL = re.compile(r"^\s*(description|answer|output)\s*:\s*", re.IGNORECASE)


def clean_answer(text: str) -> str:
    """Strip what chat models wrap around the sentence: whitespace, a "Description:" label, quotes."""
    text = _LEADING_LABEL.sub("", text.strip())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'\u201c\u201d`":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == "\u201c" and text[-1] == "\u201d":
        text = text[1:-1].strip()
    return text


def head_noun(record: ActionRecord) -> str:
    """The word an answer must contain: the last word of the noun, EPIC's "pan:frying" read as "pan"."""
    noun = record.noun or " ".join(record.action.split()[1:])
    noun = noun.split(":")[0]
    noun = re.sub(r"\(.*?\)", " ", noun).replace("_", " ").replace("-", " ")
    words = [w for w in noun.lower().split() if w.isalnum() or w.replace("'", "").isalnum()]
    return words[-1] if words else ""


def _mentions(text: str, word: str) -> bool:
    # plural and possessive forms count: "cups", "tomatoes", "knives" (f -> ves), "cup's"
    stem = re.escape(word)
    forms = [stem + r"(?:s|es|'s)?"]
    if word.endswith("f"):
        forms.append(re.escape(word[:-1]) + "ves")
    elif word.endswith("fe"):
        forms.append(re.escape(word[:-2]) + "ves")
    elif word.endswith("y"):
        forms.append(re.escape(word[:-1]) + "ies")
    return re.search(r"\b(?:" + "|".join(forms) + r")\b", text, re.IGNORECASE) is not None


def check_answer(text: str, record: ActionRecord) -> str | None:
    """Why ``text`` is not an acceptable description of ``record``, or None when it is."""
    if not text.strip():
        return "empty answer"
    masked = _ABBREVIATIONS.sub(lambda m: m.group(0)[:-1], text.strip())
    if _SENTENCE_BREAK.search(masked):
        return "more than one sentence"
    noun = head_noun(record)
    if noun and not _mentions(text, noun):
        return f"does not mention the noun {noun!r}"
    return None
