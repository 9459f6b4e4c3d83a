"""Backend-neutral entry points to the permutation engine.

``stats`` builds a :class:`NullPlan` once and asks a backend for chunks of permutations;
the CPU backend lives in ``kernels.cpu``, the CUDA one in ``kernels.cuda``. Both take the
same plan and return the same per-permutation arrays for the same seed.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from .cpu import ale as cpu
from .cpu import csale as cpu_csale
from .plan import Grid, KernelTable, NullPlan, Sampler
from .rng import seed_key


@runtime_checkable
class Backend(Protocol):
    """What ``stats`` needs of a compute backend (``CPUBackend`` here, ``CUDABackend`` in
    kernels/cuda/backend.py). Chunks are pure functions of (plan, start, count): the same arrays on
    every backend for the same seed."""

    name: str
    n_threads: int  # CPU threads for host-side work (the C-SALE cluster null, labelling)
    fallback_reason: str | None  # why --device auto did not use a GPU (None otherwise)

    def describe(self) -> str: ...

    def fwe_chunk(
        self, plan: NullPlan, start: int, count: int, ale_thresh: float
    ) -> dict[str, np.ndarray]:
        """Per permutation: max ALE, max cluster size and mass above ``ale_thresh``."""

    def csale_pass1_chunk(
        self, plan: NullPlan, start: int, count: int, obs_log: np.ndarray, K: int
    ) -> dict[str, np.ndarray]:
        """Exceedance counts, each voxel's K smallest null values with their permutations,
        and the per-permutation max ALE."""


def build_null_plan(
    grid: Grid,
    kernels: KernelTable,
    kernel_ids: np.ndarray,
    focus_counts: np.ndarray,
    sampler: Sampler,
    seed: int,
) -> NullPlan:
    starts = np.r_[0, np.cumsum(np.asarray(focus_counts, dtype=np.int64))].astype(np.int64)
    return NullPlan(
        grid, kernels, np.asarray(kernel_ids, dtype=np.int32), starts, sampler, seed_key(seed)
    )


def log_threshold(ale_thresh: float) -> np.float32:
    """The accumulator value below which a voxel's ALE exceeds ``ale_thresh``."""
    return np.float32(math.log1p(-ale_thresh)) if ale_thresh < 1 else np.float32(-np.inf)


def plan_args(plan: NullPlan) -> tuple:
    """The arrays every CPU pass takes, in order (see cpu.null_log_sum)."""
    g, k, s = plan.grid, plan.kernels, plan.sampler
    return (
        plan.key,
        plan.exp_kernel,
        plan.exp_focus_start,
        k.cube_start,
        k.width,
        k.cube_log,
        s.ijk,
        s.cdf,
        g.row_lookup,
        g.row_zlo,
        g.row_zhi,
        g.row_off,
        g.hull_to_mask,
        g.n_mask,
    )


class CPUBackend:
    name = "cpu"

    def __init__(self, n_threads: int | None = 1, fallback_reason: str | None = None):
        self.n_threads = cpu.set_threads(n_threads)
        self.fallback_reason = fallback_reason  # why --device auto did not use a GPU

    def describe(self) -> str:
        return f"CPU (numba, {self.n_threads} thread{'s' if self.n_threads > 1 else ''})"

    def fwe_chunk(self, plan: NullPlan, start: int, count: int, ale_thresh: float):
        out_max = np.zeros(count, dtype=np.float64)
        out_size = np.zeros(count, dtype=np.int64)
        out_mass = np.zeros(count, dtype=np.float64)
        g = plan.grid
        cpu.set_threads(self.n_threads)
        cpu.fwe_null_chunk(
            start,
            count,
            self.n_threads,
            *plan_args(plan),
            g.forward_neighbours,
            log_threshold(ale_thresh),
            float(ale_thresh),
            out_max,
            out_size,
            out_mass,
        )
        return {"max": out_max, "size": out_size, "mass": out_mass}

    def csale_pass1_chunk(
        self, plan: NullPlan, start: int, count: int, obs_log: np.ndarray, K: int
    ):
        """Exceedance counts, per-voxel K smallest null log values with the permutations
        they came from (``top_id``, -1 where fewer than K), and max null ALE."""
        g = plan.grid
        top = np.zeros((self.n_threads, g.n_mask, K), dtype=np.float32)
        top_id = np.full((self.n_threads, g.n_mask, K), -1, dtype=np.int32)
        counts = np.zeros((self.n_threads, g.n_mask), dtype=np.int64)
        out_max = np.zeros(count, dtype=np.float64)
        cpu.set_threads(self.n_threads)
        cpu_csale.pass1_chunk(
            start,
            count,
            self.n_threads,
            *plan_args(plan),
            np.asarray(obs_log, dtype=np.float32),
            top,
            top_id,
            counts,
            out_max,
        )
        merged, merged_id = cpu_csale.merge_top(list(top), list(top_id), K)
        return {"counts": counts.sum(axis=0), "top": merged, "top_id": merged_id, "max": out_max}
