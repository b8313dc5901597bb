"""Backend 1 against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import email.utils
import os
import sqlite3
import time

import pytest

from egoframe.enrichment import enrich_dataset, load_descriptions
from egoframe.enrichment.journal import JOURNAL_FILE, Journal
from egoframe.enrichment.openai_backend import parse_retry_after
from egoframe.enrichment.prompt import SYSTEM_PROMPT, PromptTemplate
from egoframe.enrichment.testing import FakeChatServer, FaultPlan, key_for
from egoframe.errors import EgoframeError

from .conftest import fast_config, kitchen_record

# item index -> (fault script, expected status, expected number of requests); max_retries=3 -> 4 attempts
SCRIPTS = {
    0: (["429"], "done", 2),
    1: (["500", "503"], "done", 3),
    2: (["timeout"], "done", 2),
    3: (["malformed"], "done", 2),
    4: (["empty"], "done", 2),
    5: (["multi"], "done", 2),
    6: (["no_noun"], "done", 2),
    7: (["no_choices"], "done", 2),
    8: (["truncated"], "done", 2),
    9: (["empty"] * 4, "failed", 4),
    10: (["500"] * 4, "failed", 4),
    11: (["400"], "failed", 1),
    12: (["no_usage"], "done", 1),
    13: (["multi", "timeout", "no_noun"], "done", 4),  # mixed faults, last retry succeeds
}


def test_faults_lose_and_duplicate_nothing(make_dataset):
    data_dir, records = make_dataset(24)
    keys = {r.id: key_for(r) for r in records}
    plan = FaultPlan({keys[f"r{i:04d}"]: script for i, (script, _, _) in SCRIPTS.items()}, hang=1.0)
    with FakeChatServer(plan) as srv:
        summary = enrich_dataset(data_dir, "openai", openai=fast_config(srv.base_url))
        counts = srv.counts()

    rows = {r["id"]: r for r in load_descriptions(data_dir)}
    assert len(load_descriptions(data_dir)) == len(records) == len(rows)  # every item once, none twice
    for rec in records:
        i = int(rec.id[1:])
        _, status, n_requests = SCRIPTS.get(i, ([], "done", 1))
        row = rows[rec.id]
        assert (row["status"], counts[keys[rec.id]], row["attempts"]) == (status, n_requests, n_requests), rec.id
        if status == "done":
            assert row["description"] == "The person is seen to take cup with the right hand."
            assert row["error"] == ""
        else:
            assert row["description"] == "" and row["error"]
    assert "empty answer" in rows["r0009"]["error"] and "after 4 attempts" in rows["r0009"]["error"]
    assert rows["r0010"]["error"].startswith("HTTP 500")
    assert rows["r0011"]["error"].startswith("HTTP 400")
    assert summary.done == 21 and summary.failed == 3 and summary.skipped == 0
    assert summary.requests == sum(counts.values())
    assert summary.missing_usage == 1
    assert summary.prompt_tokens == sum(r["prompt_tokens"] for r in rows.values()) > 0
    assert summary.completion_tokens == sum(r["completion_tokens"] for r in rows.values()) > 0

    # a rerun sends nothing: done and failed items are finished
    with FakeChatServer(FaultPlan()) as srv:
        again = enrich_dataset(data_dir, "openai", openai=fast_config(srv.base_url))
        assert srv.counts() == {} and again.skipped == 24 and again.requests == 0
    # --retry-failed resends exactly the failed three, which now succeed
    with FakeChatServer(FaultPlan()) as srv:
        retried = enrich_dataset(data_dir, "openai", openai=fast_config(srv.base_url), retry_failed=True)
        assert sorted(srv.counts().values()) == [1, 1, 1]
        assert set(srv.counts()) == {keys["r0009"], keys["r0010"], keys["r0011"]}
    assert retried.done == 3
    rows = {r["id"]: r for r in load_descriptions(data_dir)}
    assert all(r["status"] == "done" for r in rows.values())
    assert rows["r0009"]["attempts"] == 5  # attempts accumulate across runs: what the item really cost


def test_cost_uses_configured_prices(make_dataset, server):
    data_dir, _ = make_dataset(3)
    cfg = fast_config(server.base_url, price_prompt_per_1k=2.0, price_completion_per_1k=10.0)
    summary = enrich_dataset(data_dir, "openai", openai=cfg)
    expected = summary.prompt_tokens / 1000 * 2.0 + summary.completion_tokens / 1000 * 10.0
    assert summary.cost_usd == pytest.approx(expected) and summary.cost_usd > 0
    assert any("cost $" in line for line in summary.lines())


def test_retry_after_is_honoured_and_pauses_every_worker(make_dataset):
    data_dir, records = make_dataset(8)
    first = key_for(records[0])
    plan = FaultPlan({first: ["429"]}, latency=0.05, retry_after="1")
    with FakeChatServer(plan) as srv:
        enrich_dataset(data_dir, "openai", openai=fast_config(srv.base_url, concurrency=2))
        served = list(srv.served)
    t429 = next(s.at for s in served if s.fault == "429")
    retry = [s.at for s in served if s.key == first][1]
    assert retry - t429 >= 1.0
    # the other worker was stopped too: nobody sent while the server asked us to wait
    assert not [s for s in served if t429 + 0.1 < s.at < t429 + 1.0]


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(future) <= 30


def test_unreachable_endpoint_stops_without_marking_items_failed(make_dataset):
    data_dir, _ = make_dataset(3)
    with FakeChatServer() as srv:
        url = srv.base_url  # a port that was just free and is closed again below
    with pytest.raises(EgoframeError, match="cannot reach"):
        enrich_dataset(data_dir, "openai", openai=fast_config(url, max_retries=1))
    with Journal(os.path.join(data_dir, JOURNAL_FILE), "openai", "fake-model") as journal:
        assert journal.finished_ids() == set()


def test_rejected_key_stops_the_run_with_one_line(make_dataset):
    data_dir, records = make_dataset(5)
    plan = FaultPlan({key_for(r): ["401"] for r in records})
    with FakeChatServer(plan) as srv:
        with pytest.raises(EgoframeError, match="api-key") as err:
            enrich_dataset(data_dir, "openai", openai=fast_config(srv.base_url, concurrency=1))
    assert "\n" not in str(err.value)
    with Journal(os.path.join(data_dir, JOURNAL_FILE), "openai", "fake-model") as journal:
        assert journal.finished_ids() == set()


def test_second_run_on_the_same_data_set_is_refused(tmp_path):
    path = str(tmp_path / JOURNAL_FILE)
    with Journal(path, "openai", "m"):
        with pytest.raises(EgoframeError, match="another enrichment run"):
            Journal(path, "openai", "m")
    Journal(path, "openai", "m").close()  # released on close


def test_done_is_one_transaction_in_wal_mode(tmp_path):
    path = str(tmp_path / JOURNAL_FILE)
    with Journal(path, "openai", "m") as journal:
        journal.record_attempt("a", 5, 2, "HTTP 500")
        journal.record_done("a", "the person takes the cup.", 7, 3)
        # another connection (another process) sees the finished row as soon as record_done returns
        other = sqlite3.connect(path)
        row = other.execute("SELECT status, description, attempts, prompt_tokens FROM items").fetchone()
        mode = other.execute("PRAGMA journal_mode").fetchone()[0]
        other.close()
    assert row == ("done", "the person takes the cup.", 2, 12)
    assert mode == "wal"


def test_prompt_follows_fig9():
    rec = kitchen_record(3)
    messages = PromptTemplate().messages(rec)
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT and "only one sentence" in SYSTEM_PROMPT
    assert messages[1]["content"].startswith("Examples for learning:") and "(12) Action:" in messages[1]["content"]
    query = messages[2]["content"]
    assert query.startswith("Example for inference:\nAction: take cup\nObjects: ")
    # red cup box: x 41..101 of 640, y 200..260 of 480 -> normalized to 0-1
    assert "red cup [0.064, 0.417, 0.158, 0.542]" in query
    assert "Description:" not in query  # the inference example carries no answer
