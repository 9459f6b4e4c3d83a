"""Chunked permutation runs: progress, checkpoints and memory independent of n_iters.

A run is split into fixed chunks of permutation indices. Each chunk's per-permutation
results (a few numbers per permutation) can be stored by the caller (``store``) so that a
killed run resumes from its last finished chunk; because every permutation is a pure
function of (seed, index), resumed results are identical to an uninterrupted run's.

With an ``executor`` (:mod:`csale_app.distributed`, ``--dask-scheduler``) the chunks run on
a cluster instead: same chunks, same numbers, results put together in chunk order, and the
same checkpoints (a run resumes from them with or without a cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


class ChunkStore(Protocol):
    def get(self, index: int) -> dict[str, np.ndarray] | None: ...

    def put(self, index: int, arrays: dict[str, np.ndarray]) -> None: ...


def fwe_call(backend, plan, start: int, count: int, ale_thresh: float) -> dict:
    """ALE Monte Carlo FWE chunk (max ALE, max cluster size and mass per permutation)."""
    return backend.fwe_chunk(plan, start, count, ale_thresh)


def csale_pass1_call(backend, plan, start: int, count: int, obs_log: np.ndarray, K: int) -> dict:
    """C-SALE permutation pass chunk (exceedance counts, top-K lists, max null ALE)."""
    return backend.csale_pass1_chunk(plan, start, count, obs_log, K)


@dataclass(frozen=True)
class NullRun:
    """How a permutation null runs (never what it computes): the backend, the Dask
    executor if any, the chunk size, the checkpoint store and the progress callback."""

    backend: object
    chunk_size: int = 500
    store: ChunkStore | None = None
    progress: Callable[[int], None] | None = None
    executor: object | None = None
    ledger: dict | None = None  # chunk index -> who computed it (with an executor)


@dataclass(frozen=True)
class BackendChunk:
    """``compute(start, count)`` as ``call(backend, plan, start, count, *args)``.

    Called here, it runs on ``backend``; an executor instead sends ``plan`` and ``args``
    to each worker once and runs ``call`` there with the worker's own backend (its CPU
    threads or its GPU), so nothing of this process's backend travels."""

    call: Callable
    backend: object
    plan: object
    args: tuple = ()

    def __call__(self, start: int, count: int) -> dict[str, np.ndarray]:
        return self.call(self.backend, self.plan, start, count, *self.args)


def chunk_bounds(n_iters: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(s, min(chunk_size, n_iters - s)) for s in range(0, n_iters, chunk_size)]


def run_chunked(
    n_iters: int,
    chunk_size: int,
    compute: Callable[[int, int], dict[str, np.ndarray]],
    store: ChunkStore | None = None,
    progress: Callable[[int], None] | None = None,
    executor=None,
    ledger: dict | None = None,
) -> dict[str, np.ndarray]:
    """Run ``compute(start, count)`` over all chunks and concatenate the results.

    With ``executor``, the chunks not in ``store`` run on the cluster (each stored as it
    finishes; ``ledger[index]`` records the worker and device); the concatenation is in
    chunk order, so the result is the same."""
    bounds = chunk_bounds(n_iters, chunk_size)
    parts: list[dict[str, np.ndarray] | None] = [None] * len(bounds)
    if executor is not None:
        todo = []
        for index, (start, count) in enumerate(bounds):
            parts[index] = store.get(index) if store is not None else None
            if parts[index] is None:
                todo.append((index, start, count))
            elif progress is not None:
                progress(count)
        for index, arrays in executor.map_chunks(compute, todo, ledger=ledger):
            parts[index] = arrays
            if store is not None:
                store.put(index, arrays)
            if progress is not None:
                progress(bounds[index][1])
    else:
        for index, (start, count) in enumerate(bounds):
            arrays = store.get(index) if store is not None else None
            if arrays is None:
                arrays = compute(start, count)
                if store is not None:
                    store.put(index, arrays)
            parts[index] = arrays
            if progress is not None:
                progress(count)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def run_chunked_reduce(
    n_iters: int,
    chunk_size: int,
    compute: Callable[[int, int], dict[str, np.ndarray]],
    reduce: Callable[[dict | None, dict], dict],
    store: ChunkStore | None = None,
    progress: Callable[[int], None] | None = None,
    executor=None,
    ledger: dict | None = None,
) -> dict[str, np.ndarray]:
    """Like :func:`run_chunked`, but folds each chunk into a running state (``reduce``).

    The store keeps the state after each finished chunk (the previous one is superseded),
    so per-voxel accumulators are checkpointed without growing with n_iters.

    With ``executor``, ``reduce`` must be associative (``reduce(reduce(a, b), c) ==
    reduce(a, reduce(b, c))``, as C-SALE's counts, top-K merge and max list are): adjacent
    finished ranges of chunks are merged on the workers as a tree, and the result equals
    the sequential fold. The store still gets the state of chunks 0..i (the same files as
    without a cluster) whenever the range starting at chunk 0 grows.
    """
    bounds = chunk_bounds(n_iters, chunk_size)
    state, first = None, 0
    if store is not None:
        for index in range(len(bounds) - 1, -1, -1):
            saved = store.get(index)
            if saved is not None:
                state, first = saved, index + 1
                break
    for index in range(first):
        if progress is not None:
            progress(bounds[index][1])
    if executor is not None:
        todo = [
            (index, start, count) for index, (start, count) in enumerate(bounds) if index >= first
        ]

        def checkpoint(last: int, value: dict) -> None:
            if store is not None:
                store.put(last, value)

        def done(index: int) -> None:
            if progress is not None:
                progress(bounds[index][1])

        return (
            executor.reduce_chunks(
                compute,
                reduce,
                todo,
                state,
                first,
                on_chunk=done,
                on_prefix=checkpoint,
                ledger=ledger,
            )
            or {}
        )
    for index, (start, count) in enumerate(bounds):
        if index < first:
            continue
        state = reduce(state, compute(start, count))
        if store is not None:
            store.put(index, state)
        if progress is not None:
            progress(count)
    return state or {}


def computed_by(ledger: dict, n_iters: int, chunk_size: int, cluster: str) -> dict:
    """The sidecars' ``ComputedBy``: which worker (and device, CUDA_VISIBLE_DEVICES) computed
    which permutation chunks of a cluster run; chunks not in ``ledger`` came from the work
    folder's checkpoints (an earlier, interrupted run)."""
    workers: dict[tuple, list[int]] = {}
    for index in sorted(ledger):
        w = ledger[index]
        key = (
            w.get("worker"),
            w.get("name"),
            w.get("host"),
            w.get("device"),
            w.get("cuda_visible_devices"),
        )
        workers.setdefault(key, []).append(int(index))
    n_chunks = len(chunk_bounds(n_iters, chunk_size))
    return {
        "DaskScheduler": cluster,
        "PermutationsPerChunk": chunk_size,
        "Workers": [
            {
                "Worker": k[0],
                "Name": k[1],
                "Host": k[2],
                "Device": k[3],
                "CUDA_VISIBLE_DEVICES": k[4],
                "Chunks": chunks,
            }
            for k, chunks in sorted(workers.items(), key=lambda kv: kv[1][0])
        ],
        "ChunksFromCheckpoints": [i for i in range(n_chunks) if i not in ledger],
    }
