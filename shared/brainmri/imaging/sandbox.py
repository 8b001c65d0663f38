"""Untrusted decoding in child processes, with a time limit and a memory cap.

Decoders are large C libraries fed by strangers. Running them in a small pool of ``spawn``ed
processes means a pathological file can cost at most ``timeout`` seconds and ``memory_mb`` of
address space, and a crash or hang takes down a disposable child - never the API process. On a
timeout the pool is torn down and rebuilt.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import threading
from collections.abc import Callable
from multiprocessing.pool import Pool
from typing import Any, TypeVar

from brainmri.errors import InputError, InputTooLargeError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _limit_memory(memory_mb: int) -> None:
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import brainmri.imaging.ingest  # noqa: F401 - warm the decoders once per child


class DecodeSandbox:
    def __init__(self, *, processes: int = 2, timeout: float = 30.0, memory_mb: int = 2048) -> None:
        self.processes = processes
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._pool: Pool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> Pool:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = context.Pool(
                    self.processes,
                    initializer=_limit_memory,
                    initargs=(self.memory_mb,),
                    maxtasksperchild=200,
                )
            return self._pool

    def _reset(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child; input errors propagate, a timeout becomes 422."""
        pending = self._get_pool().apply_async(fn, args)
        try:
            return pending.get(timeout=self.timeout)
        except multiprocessing.TimeoutError as exc:
            log.warning("decode took longer than %.0fs; sandbox restarted", self.timeout)
            self._reset()
            raise InputError(
                f"decoding took longer than {self.timeout:.0f} s and was stopped",
                code="decode_timeout",
            ) from exc
        except MemoryError as exc:
            raise InputTooLargeError(
                "decoding needed more memory than allowed", code="decode_memory_limit"
            ) from exc

    def warm_up(self) -> None:
        self._get_pool()

    def close(self) -> None:
        self._reset()
