"""One way to run work in other processes: a ``ProcessPoolExecutor`` whose workers come from a fork server.

Plain ``fork`` copies the parent mid-flight, and libraries that keep worker threads (PyAV >= 17's threaded
libswscale, OpenMP) leave a child waiting forever on threads that were not copied: curating with two workers
hung in CI after the parent had decoded a video. A fork server is a clean process started once that imports
only ``preload``; every worker is forked from it, so no parent's threads are inherited, and starting a worker
stays a fork. ``__main__`` is not preloaded, so a user's script without a ``__main__`` guard still works as long
as the worker function lives in an importable module.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int, preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes forked from a fork server that imported the modules in ``preload``."""
    context = multiprocessing.get_context("forkserver")
    # Takes effect when this process's fork server first starts; later calls reuse that server.
    context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context)
