"""Shared helpers of the benchmarks: interleaved timing, peak memory, medians, machine line.

The machine these run on is usually shared (2 cores, other jobs training), so every comparison is
interleaved (A, B, A, B, ...) in one process and reported as medians and ratios, never as one-off times.
"""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _malloc_trim() -> None:
    # glibc keeps freed heap pages; without handing them back first, a second run of the same work
    # would reuse them and show almost no RSS growth, so runs measured later would look cheaper.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak extra memory of the code in a ``with`` block.

    On CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated at entry. On CPU, tracemalloc
    cannot see torch's allocator, so a thread samples the process RSS every ``interval`` s and the
    peak above the RSS at entry is reported (a sampled RSS high-water mark: it can miss peaks shorter
    than the interval, and it counts allocator slack, like ``ru_maxrss`` would).
    """

    def __init__(self, device: str = "cpu", interval: float = 0.002):
        self.device, self.interval = device, interval
        self.peak_bytes = 0

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        _malloc_trim()
        self._base = self._peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
            return False
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_bytes())
        self.peak_bytes = self._peak - self._base
        return False


@contextmanager
def timer(out: list, device: str = "cpu"):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    out.append(time.perf_counter() - start)


def interleaved(runs: dict, repeats: int, device: str = "cpu", warmup: int = 1, memory_runs: int = 1) -> dict[str, dict]:
    """Run each named zero-argument callable ``warmup`` times, then ``repeats`` timed rounds of A, B, A, B ...,
    then ``memory_runs`` rounds in which each one's peak memory is measured.

    Time and memory come from separate runs because the CPU memory probe perturbs the timing: its sampling
    thread wakes every 2 ms and ``malloc_trim`` hands the heap back before each run, so on a 2-core machine
    the timed work shares the cores with it and re-faults its pages. Measured (SD-1.5-size UNet, batch 8,
    2 steps, 3 rounds, docs/performance.md): egoframe/ip2p 0.903 timed without the probe, 1.043 with it.

    Returns, per name, the list of seconds, the median and the median peak memory (bytes).
    """
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    seconds = {name: [] for name in runs}
    for r in range(repeats):
        # Alternate the order each round so neither side always runs right after the other's allocations.
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            with timer(seconds[name], device):
                runs[name]()
    memory = memory_runs_of(runs, memory_runs, device)
    return {name: {"seconds": seconds[name], "median_s": statistics.median(seconds[name]),
                   "peak_bytes": statistics.median(memory[name]) if memory[name] else 0} for name in runs}


def memory_runs_of(runs: dict, rounds: int, device: str = "cpu") -> dict[str, list[int]]:
    """Peak memory (bytes) of each named callable over ``rounds`` untimed rounds, order alternating."""
    memory = {name: [] for name in runs}
    for r in range(rounds):
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            with PeakMemory(device) as mem:
                runs[name]()
            memory[name].append(mem.peak_bytes)
    return memory


def machine_line(device: str = "cpu") -> str:
    import torch

    what = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.startswith("cuda"):
        what += f", {torch.cuda.get_device_name()}"
    try:
        load = os.getloadavg()[0]
        what += f", load avg {load:.1f} at start"
    except OSError:
        pass
    return what


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"
