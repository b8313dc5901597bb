"""Kill an enrichment run with SIGKILL, rerun it: no finished item is requested again, all end done."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from egoframe.enrichment import enrich_dataset, load_descriptions
from egoframe.enrichment.journal import JOURNAL_FILE
from egoframe.enrichment.testing import FakeChatServer, FaultPlan, key_for

from .conftest import fast_config

CHILD = textwrap.dedent("""
    import sys
    from egoframe.enrichment import OpenAIConfig, enrich_dataset
    cfg = OpenAIConfig(base_url=sys.argv[2], model="fake-model", concurrency=4, timeout=5.0, backoff_base=0.01)
    enrich_dataset(sys.argv[1], "openai", openai=cfg)
""")


def _done_ids(path: str) -> set[str]:
    if not os.path.exists(path):
        return set()
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT item_id FROM items WHERE status = 'done'")}
    except sqlite3.OperationalError:  # the child has not created the table yet
        return set()
    finally:
        db.close()


def test_sigkill_then_rerun_pays_nothing_twice(make_dataset):
    data_dir, records = make_dataset(80)
    journal = os.path.join(data_dir, JOURNAL_FILE)
    keys = {r.id: key_for(r) for r in records}
    with FakeChatServer(FaultPlan(latency=0.05)) as srv:
        child = subprocess.Popen([sys.executable, "-c", CHILD, data_dir, srv.base_url])
        deadline = time.monotonic() + 30
        while len(_done_ids(journal)) < 12:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        finished_before = _done_ids(journal)
        counts_before = srv.counts()
        assert 12 <= len(finished_before) < len(records)

        summary = enrich_dataset(data_dir, "openai", openai=fast_config(srv.base_url, concurrency=8))
        counts_after = srv.counts()

    assert summary.skipped == len(finished_before)
    for item_id in finished_before:  # paid once, never again
        assert counts_after[keys[item_id]] == counts_before[keys[item_id]] == 1
    for rec in records:  # an item in flight at the kill may be sent once more, nothing more
        assert 1 <= counts_after[keys[rec.id]] <= 2
    rows = load_descriptions(data_dir)
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in records)  # each exactly once
    assert all(r["status"] == "done" and r["description"] for r in rows)
