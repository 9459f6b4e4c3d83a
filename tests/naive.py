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
