"""Device functions whose algorithm is the same on the CPU and the GPU, written once and
compiled for both (the ``compile_rng(jit)`` pattern of :mod:`.rng`).

- ``insert_top(vals, ids, s, ident)``: insert ``s`` into the ascending list ``vals`` (its K
  smallest values so far; ``ids`` beside it) when it is smaller than the last; equal values
  keep their arrival order, which is what makes the C-SALE cluster null identical on every
  device, thread count and chunking.
- ``log_to_ale(s)``: the ALE value of an accumulator entry (log of the product of 1 - MA).

Kept apart on purpose: the scatter of kernels into the accumulator (the CPU adds each
focus's kernel box row by row into a hull; the GPU gathers per voxel tile, which avoids
atomics) and the scan of a permutation's map (the CPU walks its hull once, clearing it as
it goes; the GPU reduces each permutation in one block with a shared-memory tree). Their
float32 operations are the same, so the results are too (tests/kernels/test_cuda_sim.py).
"""

from __future__ import annotations

import math


def compile_shared(jit):
    """Return (insert_top, log_to_ale) compiled with ``jit``."""

    @jit
    def insert_top(vals, ids, s, ident):
        pos = vals.shape[0] - 1
        while pos > 0 and vals[pos - 1] > s:
            vals[pos] = vals[pos - 1]
            ids[pos] = ids[pos - 1]
            pos -= 1
        vals[pos] = s
        ids[pos] = ident

    @jit
    def log_to_ale(s):
        return 1.0 - math.exp(s)

    return insert_top, log_to_ale
