"""CPU passes of C-SALE: exceedance counts, top-K null values, and the cluster-FWE null.

Values stay in the accumulator's log space (acc = log(1 - ALE)), where a *smaller* value
means a *larger* ALE, so "null >= observed" is ``acc <= obs_log`` and the top-K null
values per voxel are the K smallest accumulator values, kept sorted ascending.

Pass 1 (per permutation): count exceedances against the observed map, keep per voxel the
K smallest null values, record the max null ALE. Pass 2 regenerates the same permutations
from their counter-based seeds and, for each, takes its map against the *other*
permutations: p_j(v) = max(#{i != j: null_i(v) >= null_j(v)}, 1) / (n - 1). Only the top K
values are needed to decide p_j(v) < voxel_thresh, which keeps memory at K per voxel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .cpu import cluster_max, max_foci_per_experiment, null_log_sum


@njit(parallel=True, cache=True)
def pass1_chunk(perm_start, n_perm, n_threads, key, exp_kernel, exp_focus_start, cube_start,
                k_width, cube, cand_ijk, cdf, row_lookup, row_zlo, row_zhi, row_off,
                hull_to_mask, n_mask, obs_log, top, counts, out_max):
    """``top`` (n_threads, n_mask, K) and ``counts`` (n_threads, n_mask) are per thread."""
    K = top.shape[2]
    max_foci = max_foci_per_experiment(exp_focus_start)
    per = (n_perm + n_threads - 1) // n_threads
    for c in prange(n_threads):
        acc = np.zeros(hull_to_mask.shape[0], dtype=np.float32)
        scratch = np.zeros(hull_to_mask.shape[0], dtype=np.float32)
        f_ijk = np.empty((max_foci, 3), dtype=np.int32)
        for i in range(c * per, min(n_perm, (c + 1) * per)):
            null_log_sum(perm_start + i, key, exp_kernel, exp_focus_start, cube_start, k_width,
                         cube, cand_ijk, cdf, row_lookup, row_zlo, row_zhi, row_off, acc,
                         scratch, f_ijk)
            min_log = np.float32(0.0)
            for hx in range(hull_to_mask.shape[0]):
                s = acc[hx]
                acc[hx] = 0.0
                v = hull_to_mask[hx]
                if v < 0:
                    continue
                if s < min_log:
                    min_log = s
                if s <= obs_log[v]:
                    counts[c, v] += 1
                if s < top[c, v, K - 1]:
                    pos = K - 1
                    while pos > 0 and top[c, v, pos - 1] > s:
                        top[c, v, pos] = top[c, v, pos - 1]
                        pos -= 1
                    top[c, v, pos] = s
            out_max[i] = 1.0 - math.exp(min_log)


@njit(parallel=True, cache=True)
def pass2_chunk(perm_start, n_perm, n_threads, key, exp_kernel, exp_focus_start, cube_start,
                k_width, cube, cand_ijk, cdf, row_lookup, row_zlo, row_zhi, row_off,
                hull_to_mask, n_mask, fwd, top, count_limit, out_size):
    """Max cluster size of each permutation's p map against the other permutations.

    A voxel is supra-threshold when max(#others >= it, 1) < ``count_limit``
    (= voxel_thresh * (n_iters - 1)).
    """
    K = top.shape[1]
    max_foci = max_foci_per_experiment(exp_focus_start)
    per = (n_perm + n_threads - 1) // n_threads
    for c in prange(n_threads):
        acc = np.zeros(hull_to_mask.shape[0], dtype=np.float32)
        scratch = np.zeros(hull_to_mask.shape[0], dtype=np.float32)
        f_ijk = np.empty((max_foci, 3), dtype=np.int32)
        supra = np.empty(n_mask, dtype=np.int32)
        dummy = np.zeros(n_mask, dtype=np.float64)
        parent = np.full(n_mask, -1, dtype=np.int32)
        size = np.zeros(n_mask, dtype=np.int64)
        mass = np.zeros(n_mask, dtype=np.float64)
        for i in range(c * per, min(n_perm, (c + 1) * per)):
            null_log_sum(perm_start + i, key, exp_kernel, exp_focus_start, cube_start, k_width,
                         cube, cand_ijk, cdf, row_lookup, row_zlo, row_zhi, row_off, acc,
                         scratch, f_ijk)
            n_supra = 0
            for hx in range(hull_to_mask.shape[0]):
                s = acc[hx]
                acc[hx] = 0.0
                v = hull_to_mask[hx]
                if v >= 0 and s < 0.0 and s < top[v, K - 1]:
                    cnt = 0
                    for k in range(K):
                        if top[v, k] <= s:
                            cnt += 1
                        else:
                            break
                    others = max(cnt - 1, 1)
                    if others < count_limit:
                        supra[n_supra] = v
                        n_supra += 1
            ms, _ = cluster_max(supra, n_supra, dummy, 0.0, fwd, parent, size, mass)
            out_size[i] = ms
