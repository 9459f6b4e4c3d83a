"""Chunked permutation runs: progress, checkpoints and memory independent of n_iters.

A run is split into fixed chunks of permutation indices. Each chunk's per-permutation
results (a few numbers per permutation) can be stored by the caller (``store``) so that a
killed run resumes from its last finished chunk; because every permutation is a pure
function of (seed, index), resumed results are identical to an uninterrupted run's.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class ChunkStore(Protocol):
    def get(self, index: int) -> dict[str, np.ndarray] | None: ...

    def put(self, index: int, arrays: dict[str, np.ndarray]) -> None: ...


def chunk_bounds(n_iters: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(s, min(chunk_size, n_iters - s)) for s in range(0, n_iters, chunk_size)]


def run_chunked(n_iters: int, chunk_size: int,
                compute: Callable[[int, int], dict[str, np.ndarray]],
                store: ChunkStore | None = None,
                progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Run ``compute(start, count)`` over all chunks and concatenate the results."""
    parts: list[dict[str, np.ndarray]] = []
    for index, (start, count) in enumerate(chunk_bounds(n_iters, chunk_size)):
        arrays = store.get(index) if store is not None else None
        if arrays is None:
            arrays = compute(start, count)
            if store is not None:
                store.put(index, arrays)
        parts.append(arrays)
        if progress is not None:
            progress(count)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def run_chunked_reduce(n_iters: int, chunk_size: int,
                       compute: Callable[[int, int], dict[str, np.ndarray]],
                       reduce: Callable[[dict | None, dict], dict],
                       store: ChunkStore | None = None,
                       progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Like :func:`run_chunked`, but folds each chunk into a running state (``reduce``).

    The store keeps the state after each finished chunk (the previous one is superseded),
    so per-voxel accumulators are checkpointed without growing with n_iters.
    """
    bounds = chunk_bounds(n_iters, chunk_size)
    state, first = None, 0
    if store is not None:
        for index in range(len(bounds) - 1, -1, -1):
            saved = store.get(index)
            if saved is not None:
                state, first = saved, index + 1
                break
    for index, (start, count) in enumerate(bounds):
        if index < first:
            if progress is not None:
                progress(count)
            continue
        state = reduce(state, compute(start, count))
        if store is not None:
            store.put(index, state)
        if progress is not None:
            progress(count)
    return state or {}
