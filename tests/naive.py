"""Slow, obviously-correct reference implementations that the fast kernels are tested against.

Plain numpy over dense volumes, no padding tricks, no log-space, no union-find.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def place_kernel(shape, ijk, kernel):
    """Dense volume with ``kernel`` centred on voxel ``ijk`` (clipped at the borders)."""
    out = np.zeros(shape)
    half = np.array(kernel.shape) // 2
    lo = np.asarray(ijk) - half
    for di in range(kernel.shape[0]):
        for dj in range(kernel.shape[1]):
            for dk in range(kernel.shape[2]):
                i, j, k = lo[0] + di, lo[1] + dj, lo[2] + dk
                if 0 <= i < shape[0] and 0 <= j < shape[1] and 0 <= k < shape[2]:
                    out[i, j, k] = kernel[di, dj, dk]
    return out


def ma_map(shape, foci_ijk, kernel):
    """MA map of one experiment: voxel-wise max of its foci's kernels."""
    ma = np.zeros(shape)
    for ijk in foci_ijk:
        ma = np.maximum(ma, place_kernel(shape, ijk, kernel))
    return ma


def ale_map(shape, experiments, kernels):
    """ALE = 1 - prod(1 - MA) over experiments (dense, float64)."""
    prod = np.ones(shape)
    for foci, kernel in zip(experiments, kernels):
        prod *= 1.0 - ma_map(shape, foci, kernel)
    return 1.0 - prod


def cluster_max(values, mask, thresh):
    """Max size and max mass (sum of value - thresh) of faces-connected clusters > thresh."""
    vol = np.where(mask & (values > thresh), values, 0.0)
    labels, n = ndimage.label(vol > 0, ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return 0, 0.0
    sizes = np.bincount(labels.ravel())[1:]
    masses = ndimage.sum(vol - thresh, labels, index=np.arange(1, n + 1))
    return int(sizes.max()), float(np.max(masses))


def csale_cluster_null(null_log, voxel_thresh, mask, grid_mask_ijk):
    """O(n^2) definition: permutation j's p map against the other n - 1 permutations,
    p_j(v) = max(#{i != j: null_i(v) >= null_j(v)}, 1) / (n - 1), thresholded at
    voxel_thresh; the largest faces-connected cluster of each permutation."""
    n, n_mask = null_log.shape
    sizes = np.zeros(n, dtype=np.int64)
    conn = ndimage.generate_binary_structure(3, 1)
    for j in range(n):
        others_ge = (null_log <= null_log[j][None, :]).sum(axis=0) - 1  # smaller log = larger ALE
        p = np.maximum(others_ge, 1) / (n - 1)
        supra = (p < voxel_thresh) & (null_log[j] < 0)
        vol = np.zeros(mask.shape, dtype=bool)
        vol[tuple(grid_mask_ijk[supra].T)] = True
        labels, k = ndimage.label(vol, conn)
        sizes[j] = np.bincount(labels.ravel())[1:].max() if k else 0
    return sizes


def exceedance_p(null_log, obs_log):
    n = null_log.shape[0]
    counts = (null_log <= obs_log[None, :]).sum(axis=0)
    return np.clip(counts / n, 1 / n, 1 - 1 / n)
