from __future__ import annotations

import pytest

from egoframe.data.records import ActionRecord, Box, save_records
from egoframe.enrichment.openai_backend import OpenAIConfig
from egoframe.enrichment.testing import FakeChatServer, FaultPlan

W, H = 640, 480


def kitchen_record(i: int, verb: str = "take", noun: str = "cup", colour: str = "red") -> ActionRecord:
    """A record whose object box shifts with ``i``, so that every record's prompt (and server key) differs."""
    x = 20 + (i * 7) % 500
    return ActionRecord(
        id=f"r{i:04d}", source="world", action=f"{verb} {noun}", verb=verb, noun=noun, width=W, height=H,
        boxes=[
            Box("left_hand", 10, 300, 150, 470, role="left_hand"),
            Box("right_hand", 480, 300, 630, 470, role="right_hand"),
            Box(f"{colour} {noun}", x, 200, x + 60, 260, role="object_of_change"),
        ],
    )


@pytest.fixture
def make_dataset(tmp_path):
    def make(n: int, name: str = "ds") -> tuple[str, list[ActionRecord]]:
        d = tmp_path / name
        d.mkdir()
        records = [kitchen_record(i) for i in range(n)]
        save_records(records, str(d / "pairs.parquet"))
        return str(d), records

    return make


@pytest.fixture
def server():
    srv = FakeChatServer(FaultPlan()).start()
    yield srv
    srv.stop()


def fast_config(base_url: str, **overrides) -> OpenAIConfig:
    """Timeouts and backoffs short enough that fault tests take well under a second each."""
    cfg = dict(base_url=base_url, model="fake-model", api_key="k", concurrency=4, max_retries=3, timeout=0.3,
               backoff_base=0.01, backoff_max=0.05, seed=0)
    cfg.update(overrides)
    return OpenAIConfig(**cfg)
