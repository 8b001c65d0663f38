"""Ordered parallel map with bounded look-ahead (decode many files without holding them all)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """Yield ``fn(item)`` in input order, keeping at most ``window`` results in flight.

    When ``fn`` raises, or the consumer stops early, queued items that have not started are
    cancelled: a failed pack or a cancelled batch does not go on decoding up to ``window``
    more files nobody will read.
    """
    window = max(window, workers, 1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    try:
        queue: deque[Future[R]] = deque()
        for item in items:
            queue.append(pool.submit(fn, item))
            if len(queue) >= window:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
