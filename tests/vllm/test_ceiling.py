"""The reading ceiling: a supervised classifier of hand and object, trained and scored like the VLLM."""

from __future__ import annotations

import pytest

from egoframe.errors import InputError
from egoframe.vllm.ceiling import CeilingConfig, reading_ceiling


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from egoframe.enrichment.rules import RuleConfig
    from egoframe.enrichment.run import enrich_dataset
    from egoframe.world.pairs import write_pairs

    out = str(tmp_path_factory.mktemp("pool") / "pairs")
    write_pairs(out, 120, seed=11, resolution=64, test_every=4)
    enrich_dataset(out, backend="rules", rules=RuleConfig(surface="counter"))
    return out


def test_ceiling_reads_better_than_chance_and_reports_counts(pool):
    result = reading_ceiling(CeilingConfig(train_data=pool, eval_data=pool, steps=150, batch_size=32), progress=False)
    assert result["hand_n"] > 0 and result["object_n"] > 0 and result["train_pairs"] > 60
    assert 0.0 <= result["hand_accuracy"] <= 1.0
    # the object among those the label's noun allows: at worst near the uniform guess, never below a third
    assert result["object_accuracy"] > 0.34


def test_ceiling_refuses_unenriched_data(tmp_path):
    from egoframe.world.pairs import write_pairs

    out = str(tmp_path / "raw")
    write_pairs(out, 10, seed=1, resolution=32, test_every=0)
    with pytest.raises(InputError, match="enrich"):
        reading_ceiling(CeilingConfig(train_data=out, eval_data=out, split="all", steps=1), progress=False)
