"""Enrich a whole curated data set: pick the backend, skip finished items, write ``descriptions.parquet``."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from egoframe.data.records import ActionRecord, load_records
from egoframe.enrichment.journal import JOURNAL_FILE, Journal
from egoframe.enrichment.openai_backend import ChatEnricher, OpenAIConfig
from egoframe.enrichment.prompt import PromptTemplate
from egoframe.enrichment.rules import RULES_MODEL, RuleConfig, describe
from egoframe.errors import ConfigError, InputError

DESCRIPTIONS_FILE = "descriptions.parquet"
BACKENDS = ("rules", "openai")
_COLUMNS = ("id", "description", "backend", "model", "status", "attempts", "prompt_tokens",
            "completion_tokens", "error")


@dataclass
class EnrichSummary:
    backend: str
    model: str
    total: int  # records in the data set
    skipped: int  # already finished by an earlier run: no request sent
    processed: int  # handled by this run
    done: int
    failed: int
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    missing_usage: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    problems: dict[str, int] = field(default_factory=dict)
    output: str = ""

    def lines(self) -> list[str]:
        rate = self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"backend {self.backend} ({self.model}): {self.total} records, {self.skipped} already finished, "
            f"{self.processed} processed this run: {self.done} done, {self.failed} failed",
        ]
        if self.backend != "rules":
            out.append(f"requests {self.requests} ({self.retries} retries, {rate:.1f}/s over {self.elapsed_s:.1f} s); "
                       f"tokens {self.prompt_tokens} prompt + {self.completion_tokens} completion; "
                       f"cost ${self.cost_usd:.4f}")
            if self.missing_usage:
                out.append(f"{self.missing_usage} answers had no `usage`: their tokens are not counted")
        for reason, count in sorted(self.problems.items(), key=lambda kv: -kv[1]):
            out.append(f"  {count} x {reason}")
        out.append(f"wrote {self.output}")
        return out


def enrich_dataset(
    data_dir: str,
    backend: str = "rules",
    *,
    openai: OpenAIConfig | None = None,
    rules: RuleConfig | None = None,
    template: PromptTemplate | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EnrichSummary:
    """Write an enriched description for every record of ``data_dir`` into ``descriptions.parquet``.

    ``openai``: network backend, journaled in ``enrichment-journal.sqlite`` so that reruns only send
    requests for unfinished items (``retry_failed`` also resends failed ones). ``limit`` caps how many
    unfinished items this run handles.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    records = load_records(data_dir)
    _check_unique_ids(records)
    if backend == "rules":
        return _enrich_rules(data_dir, records, rules or RuleConfig(), limit, progress)
    return asyncio.run(aenrich_openai(data_dir, records, openai or OpenAIConfig.from_env(),
                                      template or PromptTemplate(), limit, retry_failed, progress))


def _check_unique_ids(records: list[ActionRecord]) -> None:
    seen: set[str] = set()
    for rec in records:
        if rec.id in seen:
            raise InputError(f"duplicate record id {rec.id!r} in the data set: ids must be unique")
        seen.add(rec.id)


def _enrich_rules(data_dir: str, records: list[ActionRecord], cfg: RuleConfig, limit: int | None,
                  progress: Callable[[str], None] | None) -> EnrichSummary:
    # no journal: the rules are free and deterministic, so redoing them is cheaper than tracking them
    start = time.perf_counter()
    chosen = records if limit is None else records[:limit]
    rows, problems = [], Counter()
    for rec in chosen:
        try:
            rows.append(_row(rec.id, describe(rec, cfg), "rules", RULES_MODEL, "done", 1))
        except ValueError as exc:
            problems[str(exc)] += 1
            rows.append(_row(rec.id, "", "rules", RULES_MODEL, "failed", 1, error=str(exc)))
        if progress:
            progress(rows[-1]["status"])
    out = write_descriptions(data_dir, rows)
    failed = sum(r["status"] == "failed" for r in rows)
    return EnrichSummary("rules", RULES_MODEL, len(records), 0, len(rows), len(rows) - failed, failed,
                         elapsed_s=time.perf_counter() - start, problems=dict(problems), output=out)


async def aenrich_openai(data_dir: str, records: list[ActionRecord], cfg: OpenAIConfig,
                         template: PromptTemplate, limit: int | None = None, retry_failed: bool = False,
                         progress: Callable[[str], None] | None = None) -> EnrichSummary:
    """The network run as a coroutine, for callers that already run an event loop."""
    cfg.validate()
    start = time.perf_counter()
    journal = Journal(os.path.join(data_dir, JOURNAL_FILE), "openai", cfg.model, template.fingerprint())
    try:
        finished = journal.finished_ids(include_failed=not retry_failed)
        todo = [r for r in records if r.id not in finished]
        skipped = len(records) - len(todo)
        if limit is not None:
            todo = todo[:limit]
        enricher = ChatEnricher(cfg, journal, template, progress)
        try:
            stats = await enricher.run(todo)
        finally:
            # also after Ctrl-C or a fatal error: the parquet then reflects everything the journal holds
            stats = enricher.stats
            out = _write_from_journal(data_dir, records, journal)
    finally:
        journal.close()
    return EnrichSummary(
        "openai", cfg.model, len(records), skipped, stats.done + stats.failed, stats.done, stats.failed,
        requests=stats.requests, retries=stats.retries, prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens, missing_usage=stats.missing_usage,
        cost_usd=cfg.cost(stats.prompt_tokens, stats.completion_tokens),
        elapsed_s=time.perf_counter() - start, problems=dict(stats.problems), output=out)


def _row(item_id: str, description: str, backend: str, model: str, status: str, attempts: int,
         prompt_tokens: int = 0, completion_tokens: int = 0, error: str = "") -> dict:
    return {"id": item_id, "description": description, "backend": backend, "model": model, "status": status,
            "attempts": attempts, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "error": error}


def _write_from_journal(data_dir: str, records: list[ActionRecord], journal: Journal) -> str:
    rows = journal.rows()
    out = []
    for rec in records:
        row = rows.get(rec.id)
        if row is not None and row.status in ("done", "failed"):
            out.append(_row(rec.id, row.description, journal.backend, journal.model, row.status, row.attempts,
                            row.prompt_tokens, row.completion_tokens, row.error))
    return write_descriptions(data_dir, out)


def write_descriptions(data_dir: str, rows: list[dict]) -> str:
    """Merge ``rows`` into ``descriptions.parquet`` (new rows replace those with the same id), atomically.

    Rows of ids this run did not touch are kept, so a trial run of one backend on a few items does not
    wipe the descriptions another backend wrote for the rest.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(data_dir, DESCRIPTIONS_FILE)
    merged = {r["id"]: r for r in _read_rows(path)} if os.path.exists(path) else {}
    merged.update({r["id"]: r for r in rows})
    schema = pa.schema([(c, pa.int64() if c in ("attempts", "prompt_tokens", "completion_tokens") else pa.string())
                        for c in _COLUMNS])
    table = pa.Table.from_pylist(list(merged.values()), schema=schema)
    tmp = f"{path}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _read_rows(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read {path}: {exc} (delete it and run `egoframe enrich` again)") from None


def load_descriptions(data_dir: str) -> list[dict]:
    """Rows of ``descriptions.parquet``: id, description, backend, model, status, attempts, tokens, error."""
    path = os.path.join(data_dir, DESCRIPTIONS_FILE)
    if not os.path.exists(path):
        raise InputError(f"no descriptions at {path}: run `egoframe enrich {data_dir}` first")
    return _read_rows(path)


def attach_descriptions(records: list[ActionRecord], data_dir: str) -> int:
    """Fill ``record.description`` from ``descriptions.parquet`` (finished rows only); returns how many."""
    texts = {r["id"]: r["description"] for r in load_descriptions(data_dir) if r["status"] == "done"}
    filled = 0
    for rec in records:
        text = texts.get(rec.id)
        if text:
            rec.description = text
            filled += 1
    return filled
