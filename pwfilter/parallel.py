"""Worker threads shared by every step of a job.

NumPy, OpenCV, pocketfft, zlib-ng and the codecs release the GIL, so threads
use every core for strips of an image, blocks of a transform or pieces of a
PNG. Starting threads for each call costs ~0.1-0.2 ms, as much as the work on
a small image, so one pool per size is kept for the life of the process.
Calls must not nest (a task that waits on tasks of the same pool could wait
for ever); none in pwfilter does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers,
                                                        thread_name_prefix="pwfilter")
        return pool


def run(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[fn(item) for item in items]``, at most ``workers`` at a time, in order."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    return list(_pool(min(workers, len(items))).map(fn, items))
