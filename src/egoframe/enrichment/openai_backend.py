"""Backend 1: any OpenAI-compatible chat-completions endpoint (hosted, vLLM, Ollama, llama.cpp ...).

A fixed pool of ``concurrency`` async workers pulls records; each attempt is one POST to
``{base_url}/chat/completions``. Transient failures (429, 5xx, timeouts, dropped connections, malformed
JSON) back off exponentially with jitter; a Retry-After header is honoured and, on 429, pauses *all*
workers, since the limit is per key rather than per request. Every answer is validated (one sentence that
names the noun) and retried when it is not; after ``max_retries`` retries the item is marked failed with
the last reason. Errors no retry can fix (401/403/404) stop the run with one line.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from egoframe.data.records import ActionRecord
from egoframe.enrichment.journal import Journal
from egoframe.enrichment.prompt import PromptTemplate
from egoframe.enrichment.validate import check_answer, clean_answer
from egoframe.errors import ConfigError, EgoframeError

ENV_BASE_URL = "EGOFRAME_LLM_BASE_URL"
ENV_MODEL = "EGOFRAME_LLM_MODEL"
ENV_API_KEY = "OPENAI_API_KEY"


@dataclass
class OpenAIConfig:
    base_url: str = ""
    model: str = ""
    api_key: str = ""
    concurrency: int = 8
    max_retries: int = 4  # retries per item after the first attempt, for any kind of failure
    timeout: float = 60.0  # seconds for one whole request
    backoff_base: float = 1.0  # first retry waits about this long, doubling after each failure
    backoff_max: float = 60.0
    max_retry_after: float = 300.0  # a server asking for longer is capped: we would rather retry and fail
    temperature: float = 0.2
    max_tokens: int = 128
    price_prompt_per_1k: float = 0.0  # USD per 1000 prompt tokens, for the cost line of the summary
    price_completion_per_1k: float = 0.0
    seed: int | None = None  # seeds the backoff jitter, for reproducible tests

    @classmethod
    def from_env(cls, **overrides) -> "OpenAIConfig":
        """Flags win over the environment: EGOFRAME_LLM_BASE_URL, EGOFRAME_LLM_MODEL, OPENAI_API_KEY."""
        given = {k: v for k, v in overrides.items() if v is not None}
        given.setdefault("base_url", os.environ.get(ENV_BASE_URL, ""))
        given.setdefault("model", os.environ.get(ENV_MODEL, ""))
        given.setdefault("api_key", os.environ.get(ENV_API_KEY, ""))
        return cls(**given)

    def validate(self) -> None:
        if not self.base_url:
            raise ConfigError(f"no endpoint: pass --base-url or set {ENV_BASE_URL} (e.g. http://127.0.0.1:8000/v1)")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--base-url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ConfigError(f"no model: pass --model or set {ENV_MODEL}")
        for name in ("concurrency",):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("timeout", "backoff_base", "backoff_max", "max_retry_after", "temperature",
                     "price_prompt_per_1k", "price_completion_per_1k"):
            if not math.isfinite(getattr(self, name)):  # NaN passes every comparison below
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.price_prompt_per_1k + completion_tokens / 1000 * self.price_completion_per_1k


@dataclass
class RunStats:
    """What one run did on the wire; the summary is built from it."""

    requests: int = 0
    retries: int = 0
    done: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    missing_usage: int = 0
    problems: Counter = field(default_factory=Counter)  # reason of each unusable attempt -> count


@dataclass
class _Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool


class _Transient(Exception):
    """Worth retrying after a pause: the endpoint, not the item, had a problem."""

    def __init__(self, reason: str, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable


class _Rejected(Exception):
    """The endpoint refused this item's request as such (400/413/422): retrying the same request cannot help."""


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds (fractions accepted) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ChatEnricher:
    """Sends one record at a time through the chat endpoint and writes each outcome to the journal."""

    def __init__(self, cfg: OpenAIConfig, journal: Journal, template: PromptTemplate,
                 progress: Callable[[str], None] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.journal = journal
        self.template = template
        self.progress = progress
        self.stats = RunStats()
        self._rng = random.Random(cfg.seed)
        self._gate_until = 0.0  # monotonic time before which no worker may send (set by 429 + Retry-After)
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"

    async def run(self, records: list[ActionRecord]) -> RunStats:
        import httpx

        headers = {"Authorization": f"Bearer {self.cfg.api_key}"} if self.cfg.api_key else {}
        timeout = httpx.Timeout(self.cfg.timeout, connect=min(self.cfg.timeout, 10.0))
        pending = iter(records)  # shared by the workers; safe because they all run on one event loop thread
        # built once: loading the CA bundle takes ~70 ms, too much to repeat for each worker's client
        ssl_context = httpx.create_ssl_context() if self.cfg.base_url.startswith("https://") else None

        async def worker() -> None:
            # one single-connection client per worker: httpcore's pool scans every connection for every
            # request, so one shared pool of 32 connections cost more CPU than the requests themselves
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            verify = ssl_context if ssl_context is not None else False  # False: plain http needs no CA bundle
            async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout, verify=verify) as http:
                for record in pending:
                    await self.enrich_one(http, record)

        try:
            async with asyncio.TaskGroup() as group:  # one fatal error cancels the other workers
                for _ in range(min(self.cfg.concurrency, len(records))):
                    group.create_task(worker())
        except BaseExceptionGroup as grouped:
            raise _first_leaf(grouped) from None  # callers expect the EgoframeError, not a group
        return self.stats

    async def enrich_one(self, http, record: ActionRecord) -> str:
        """Try ``record`` until it is done or out of retries; returns "done" or "failed"."""
        messages = self.template.messages(record)
        last: _Transient | None = None
        last_reason = ""
        attempts = 1 + self.cfg.max_retries
        for attempt in range(attempts):
            if attempt:
                self.stats.retries += 1
            await self._wait_gate()
            try:
                answer = await self._post(http, messages)
            except _Transient as exc:
                last, last_reason = exc, exc.reason
                self.stats.problems[exc.reason.split(":")[0]] += 1
                self.journal.record_attempt(record.id, 0, 0, exc.reason)
                if attempt + 1 < attempts:
                    await asyncio.sleep(self._backoff(attempt, exc))
                continue
            except _Rejected as exc:
                self.stats.problems[str(exc).split(":")[0]] += 1
                return self._fail(record, str(exc))
            last = None
            text = clean_answer(answer.text)
            reason = "answer cut off at max_tokens" if answer.truncated else check_answer(text, record)
            if reason is None:
                self.journal.record_done(record.id, text, answer.prompt_tokens, answer.completion_tokens)
                self.stats.done += 1
                if self.progress:
                    self.progress("done")
                return "done"
            # a bad sample from a healthy server: resample at once, no backoff
            last_reason = f"invalid answer: {reason}"
            self.stats.problems[last_reason] += 1
            self.journal.record_attempt(record.id, answer.prompt_tokens, answer.completion_tokens, last_reason)
        if last is not None and last.unreachable:
            # not the item's fault: marking every item failed because the server is down would be wrong
            raise EgoframeError(f"cannot reach {self.cfg.base_url}: {last.reason}; is the server running?")
        return self._fail(record, f"{last_reason} (after {attempts} attempts)", counted=True)

    def _fail(self, record: ActionRecord, reason: str, counted: bool = False) -> str:
        self.journal.record_failed(record.id, reason, count_attempt=not counted)
        self.stats.failed += 1
        if self.progress:
            self.progress("failed")
        return "failed"

    def _backoff(self, attempt: int, exc: _Transient) -> float:
        if exc.retry_after is not None:
            # at least what the server asked for; +10% jitter so the pool does not return in one burst
            delay = min(exc.retry_after, self.cfg.max_retry_after) * (1 + 0.1 * self._rng.random())
            if exc.reason.startswith("HTTP 429"):
                self._gate_until = max(self._gate_until, time.monotonic() + delay)
            return delay
        ceiling = min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** attempt)
        return ceiling / 2 + self._rng.random() * ceiling / 2  # "equal jitter": never ~0, never in lockstep

    async def _wait_gate(self) -> None:
        while (wait := self._gate_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    async def _post(self, http, messages: list[dict[str, str]]) -> _Answer:
        import httpx

        payload = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                   "max_tokens": self.cfg.max_tokens}
        self.stats.requests += 1
        try:
            # httpx's timeout bounds each read; this bounds the whole request (a server trickling bytes)
            async with asyncio.timeout(self.cfg.timeout):
                resp = await http.post(self._url, json=payload)
        except (httpx.TimeoutException, TimeoutError):
            raise _Transient(f"timeout: no answer within {self.cfg.timeout:g} s") from None
        except httpx.ConnectError as exc:
            raise _Transient(f"connection failed: {exc}", unreachable=True) from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection error: {type(exc).__name__}: {exc}") from None

        status = resp.status_code
        if status == 429 or status >= 500 or status == 408:
            raise _Transient(f"HTTP {status}", retry_after=parse_retry_after(resp.headers.get("retry-after")))
        if status in (401, 403):
            raise EgoframeError(f"{self._url} answered HTTP {status}: check --api-key / {ENV_API_KEY}")
        if status == 404:
            raise EgoframeError(f"{self._url} answered HTTP 404: check --base-url (usually ends in /v1) "
                                f"and that model {self.cfg.model!r} is served there")
        if status >= 400:
            raise _Rejected(f"HTTP {status}: {resp.text[:200]}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            content = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Transient(f"malformed response: {type(exc).__name__}") from None
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        else:
            prompt_tokens = completion_tokens = 0
            self.stats.missing_usage += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        return _Answer(str(content), prompt_tokens, completion_tokens, choice.get("finish_reason") == "length")
