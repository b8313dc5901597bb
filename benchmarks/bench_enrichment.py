"""Requests/s of the OpenAI-compatible enrichment backend against the local fault-free test server.

Runs the whole path a user runs (prompt building, HTTP, validation, one journal commit per item, the
parquet at the end) at concurrency 1, 8 and 32, each on a fresh copy of a synthetic data set, and prints
the speed-up over concurrency 1. ``--latency`` is the server's per-answer delay, standing in for a model's
generation time: with 0 the run measures the client's own overhead.

    python benchmarks/bench_enrichment.py --quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager

from egoframe.data.records import ActionRecord, Box, save_records
from egoframe.enrichment import OpenAIConfig, enrich_dataset


def synthetic_records(n: int) -> list[ActionRecord]:
    out = []
    for i in range(n):
        x = 20 + (i * 7) % 500
        out.append(ActionRecord(
            id=f"b{i:06d}", source="world", action="take cup", verb="take", noun="cup", width=640, height=480,
            boxes=[Box("left_hand", 10, 300, 150, 470, role="left_hand"),
                   Box("right_hand", 480, 300, 630, 470, role="right_hand"),
                   Box("red cup", x, 200, x + 60, 260 + i % 50, role="object_of_change")]))
    return out


@contextmanager
def server_process(latency: float):
    """The package's test server in its own process (a thread in ours would share the client's GIL)."""
    proc = subprocess.Popen([sys.executable, "-m", "egoframe.enrichment.testing", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait()


def run(items: int, latency: float, concurrencies: tuple[int, ...]) -> list[tuple[int, float, float]]:
    records = synthetic_records(items)
    results = []
    with server_process(latency) as base_url, tempfile.TemporaryDirectory() as root:
        for concurrency in concurrencies:
            data_dir = os.path.join(root, f"c{concurrency}")
            os.makedirs(data_dir)
            save_records(records, os.path.join(data_dir, "pairs.parquet"))
            cfg = OpenAIConfig(base_url=base_url, model="bench", concurrency=concurrency, timeout=30.0)
            summary = enrich_dataset(data_dir, "openai", openai=cfg)
            if summary.done != items or summary.requests != items:
                raise SystemExit(f"bench run incomplete: {summary.lines()}")
            results.append((concurrency, summary.requests / summary.elapsed_s, summary.elapsed_s))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer items (for CI / a smoke run)")
    parser.add_argument("--items", type=int, default=None, help="items per run (default 600, quick 160)")
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per answer (default 0.05)")
    args = parser.parse_args()
    items = args.items or (160 if args.quick else 600)
    results = run(items, args.latency, (1, 8, 32))
    base = results[0][1]
    print(f"enrichment, {items} items, server latency {args.latency * 1000:.0f} ms/answer, {os.cpu_count()} CPUs")
    print(f"{'concurrency':>11} {'requests/s':>11} {'seconds':>8} {'vs c=1':>7}")
    for concurrency, rate, seconds in results:
        print(f"{concurrency:>11} {rate:>11.1f} {seconds:>8.2f} {rate / base:>6.1f}x")


if __name__ == "__main__":
    main()
