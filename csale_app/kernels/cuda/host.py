"""Host-side helpers of the CUDA backend (numba on the CPU): finishing each permutation's
cluster statistics from the device reductions with the CPU engine's expressions, and
building the dense kernel boxes and voxel tiles the device kernels read. Split from
:mod:`.cuda` so that module holds the device kernels and the backend only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..cpu import ale as cpu
from ..gaussian import KERNEL_BOX, KERNEL_HALF
from ..plan import NullPlan
from ..scan import scan_accumulator

#: Threads per block -> (i, j, k) voxel tile shape (one thread per voxel of a tile).
TILE_SHAPES = {
    8: (2, 2, 2),
    16: (2, 2, 4),
    32: (2, 4, 4),
    64: (4, 4, 4),
    128: (4, 4, 8),
    256: (4, 8, 8),
}
_NOT_IN_SUPPORT = np.float32(1.0)  # sentinel in the dense log-kernel boxes (logs are <= 0)


@njit(cache=True)
def finish_batch(
    min_log,
    counts,
    sidx,
    sval,
    ale_thresh,
    fwd,
    parent,
    size,
    mass,
    out_max,
    out_size,
    out_mass,
    o0,
):
    """Max ALE, max cluster size and mass of each permutation from the device reductions.

    ``sidx``/``sval`` are (rows, n_perm): column p holds permutation p's supra-threshold
    voxels (unordered) in its first ``counts[p]`` rows. Permutations whose list is longer
    than the rows given (overflow) are left for :func:`finish_row`.
    """
    rows = sidx.shape[0]
    for p in range(min_log.shape[0]):
        out_max[o0 + p] = cpu.log_to_ale(min_log[p])
        n = counts[p]
        if n > rows:
            continue
        idx = np.empty(n, dtype=np.int32)
        for i in range(n):
            idx[i] = sidx[i, p]
        order = np.argsort(idx)
        supra = np.empty(n, dtype=np.int32)
        ale_of = np.empty(n, dtype=np.float64)
        for i in range(n):
            supra[i] = idx[order[i]]
            s = sval[order[i], p]
            ale_of[i] = cpu.log_to_ale(s)
        ms, mm = cpu.cluster_max(supra, n, ale_of, ale_thresh, fwd, parent, size, mass)
        out_size[o0 + p] = ms
        out_mass[o0 + p] = mm


@njit(cache=True)
def finish_row(row, log_thresh, ale_thresh, fwd, parent, size, mass):
    """Max cluster size and mass from one full accumulator row (overflow fallback; the
    row is zeroed)."""
    n_mask = row.shape[0]
    supra = np.empty(n_mask, dtype=np.int32)
    ale_of = np.empty(n_mask, dtype=np.float64)
    _, n_supra = scan_accumulator(row, np.arange(n_mask, dtype=np.int32), log_thresh, supra, ale_of)
    return cpu.cluster_max(supra, n_supra, ale_of, ale_thresh, fwd, parent, size, mass)


@njit(cache=True)
def max_ale(min_log, out_max, o0):
    """Max null ALE from each permutation's accumulator minimum (the CPU's expression)."""
    for p in range(min_log.shape[0]):
        out_max[o0 + p] = cpu.log_to_ale(min_log[p])


def _offsets_ijk(flat_offsets: np.ndarray, padded_shape) -> np.ndarray:
    """Decode padded-grid flat kernel offsets into (n, 3) ijk offsets (|d| <= KERNEL_HALF)."""
    h = KERNEL_HALF
    p1, p2 = int(padded_shape[1]), int(padded_shape[2])
    o = np.asarray(flat_offsets, dtype=np.int64)
    dk = np.mod(o + h, p2) - h
    r = (o - dk) // p2
    dj = np.mod(r + h, p1) - h
    di = (r - dj) // p1
    return np.stack([di, dj, dk], axis=1)


def dense_log_boxes(plan: NullPlan) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, half): each kernel's log(1 - k) on a dense KERNEL_BOX^3 cube centred on the
    focus, ``1.0`` where the kernel has no support entry, and each kernel's half width."""
    k = plan.kernels
    n_k = len(k.fwhms)
    boxes = np.full((n_k, KERNEL_BOX, KERNEL_BOX, KERNEL_BOX), _NOT_IN_SUPPORT, dtype=np.float32)
    d = _offsets_ijk(k.flat_offsets, plan.grid.padded_shape) + KERNEL_HALF
    if d.size and (d.min() < 0 or d.max() >= KERNEL_BOX):
        raise ValueError("kernel offsets exceed the kernel box")
    for kid in range(n_k):
        a, b = int(k.start[kid]), int(k.start[kid + 1])
        boxes[kid, d[a:b, 0], d[a:b, 1], d[a:b, 2]] = k.log_values[a:b]
    half = ((np.asarray(k.width, dtype=np.int32) - 1) // 2).astype(np.int32)
    return boxes, half


def build_tiles(mask_ijk: np.ndarray, tpb: int) -> tuple[np.ndarray, np.ndarray]:
    """Group mask voxels into spatial bricks of at most ``tpb`` voxels.

    Returns ``tile_vox`` (n_tiles, tpb) int32 mask indices (-1 = empty slot) and
    ``tile_box`` (n_tiles, 6) int32 inclusive bounding boxes (lo_i, lo_j, lo_k, hi_i, hi_j,
    hi_k) of each tile's voxels.
    """
    bi, bj, bk = TILE_SHAPES[tpb]
    ijk = np.asarray(mask_ijk, dtype=np.int64)
    n = ijk.shape[0]
    if n == 0:
        return np.zeros((0, tpb), np.int32), np.zeros((0, 6), np.int32)
    b = ijk // np.array([bi, bj, bk])
    nb = b.max(axis=0) + 1
    key = (b[:, 0] * nb[1] + b[:, 1]) * nb[2] + b[:, 2]
    order = np.argsort(key, kind="stable")
    skey = key[order]
    starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
    tile_of = np.cumsum(np.r_[True, skey[1:] != skey[:-1]]) - 1
    slot = np.arange(n) - starts[tile_of]
    n_tiles = len(starts)
    tile_vox = np.full((n_tiles, tpb), -1, dtype=np.int32)
    tile_vox[tile_of, slot] = order.astype(np.int32)
    sijk = ijk[order]
    lo = np.minimum.reduceat(sijk, starts, axis=0)
    hi = np.maximum.reduceat(sijk, starts, axis=0)
    return tile_vox, np.concatenate([lo, hi], axis=1).astype(np.int32)
