"""The benchmarks' timing harness: timed rounds run without the memory probe, memory comes from extra runs."""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

from _common import interleaved  # noqa: E402


def test_interleaved_times_without_the_probe_and_measures_memory_apart():
    calls = []  # (name, number of live threads while the call runs)

    def make(name, size):
        def run():
            calls.append((name, threading.active_count()))
            bytearray(size)  # something for the probe to see
        return run

    base = threading.active_count()
    result = interleaved({"a": make("a", 1 << 20), "b": make("b", 1 << 20)}, repeats=4, warmup=1, memory_runs=2)
    # warmup 1 + 4 timed + 2 memory runs each, in alternating order
    assert [n for n, _ in calls] == ["a", "b"] * 1 + ["a", "b", "b", "a"] * 2 + ["a", "b", "b", "a"]
    timed = calls[2:10]
    memory = calls[10:]
    assert all(threads == base for _, threads in timed)  # no sampling thread beside the timed calls
    assert all(threads == base + 1 for _, threads in memory)  # the RSS sampler runs beside memory runs
    for name in ("a", "b"):
        assert len(result[name]["seconds"]) == 4
        assert result[name]["median_s"] >= 0
        assert result[name]["peak_bytes"] >= 0


def test_interleaved_without_memory_runs_reports_zero_peak():
    result = interleaved({"a": lambda: None}, repeats=2, warmup=0, memory_runs=0)
    assert result["a"]["peak_bytes"] == 0 and len(result["a"]["seconds"]) == 2
