"""Independent units of work (studysets, MACM seeds) run side by side on a Dask cluster.

Without ``--dask-scheduler`` they run one after another, as always. With it, each unit
runs in a client thread and submits its permutation chunks to the cluster, so the chunks
of several studysets or seeds share the workers. Client-side computation (observed maps,
tables, the C-SALE cluster null) stays one thread at a time: a unit holds the executor's
:class:`ClientLock` except while it waits for the cluster, so numba's parallel regions
are never entered concurrently (its ``workqueue`` threading layer does not allow that).
Each unit's results are its own and come back in order, so outputs are byte-identical to
a sequential run.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class ClientLock:
    """One client thread computes at a time; waiting for the cluster releases the turn."""

    def __init__(self):
        self._lock = threading.Lock()
        self._local = threading.local()

    def _holding(self) -> bool:
        return getattr(self._local, "holding", False)

    @contextlib.contextmanager
    def computing(self):
        """Hold the turn for this thread (re-entrant: a no-op if it holds it already)."""
        if self._holding():
            yield
            return
        self._lock.acquire()
        self._local.holding = True
        try:
            yield
        finally:
            self._local.holding = False
            self._lock.release()

    @contextlib.contextmanager
    def released(self):
        """Give the turn away while this thread waits (a no-op if it does not hold it)."""
        if not self._holding():
            yield
            return
        self._local.holding = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._local.holding = True


def run_all(executor, units: list[Callable[[], T]]) -> list[T]:
    """``[u() for u in units]``, side by side when ``executor`` (a Dask executor with a
    ``lock``: :class:`ClientLock`) is given; results in the order of ``units``."""
    lock = getattr(executor, "lock", None)
    if lock is None or len(units) < 2:
        return [u() for u in units]

    def call(unit):
        with lock.computing():
            return unit()

    with lock.released():
        with ThreadPoolExecutor(max_workers=len(units), thread_name_prefix="csale-unit") as pool:
            futures = [pool.submit(call, u) for u in units]
            return [f.result() for f in futures]
