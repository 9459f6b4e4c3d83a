"""C-SALE on the CPU: one permutation pass, then the cluster-FWE null from what it kept.

Values stay in the accumulator's log space (acc = log(1 - ALE)), where a *smaller* value
means a *larger* ALE, so "null >= observed" is ``acc <= obs_log`` and the top-K null
values per voxel are the K smallest accumulator values, kept sorted ascending together
with the index of the permutation each came from.

The pass (per permutation): count exceedances against the observed map, keep per voxel the
K smallest null values and their permutations, record the max null ALE. The cluster-FWE
null takes each permutation's map against the *other* permutations:
p_j(v) = max(#{i != j: null_i(v) >= null_j(v)}, 1) / (n - 1). With K = ceil(p (n - 1)) + 1,
only values among a voxel's K smallest can give p_j(v) < voxel_thresh, and every value
strictly below the K-th smallest is kept with its permutation, so each permutation's
supra-threshold voxels are read off the kept lists without generating any map again.
"""

from __future__ import annotations


import numba
import numpy as np
from numba import njit, prange

from .ale import cluster_max, compile_pass
from ..shared import compile_shared

insert_top, log_to_ale = compile_shared(njit(cache=True, inline="always"))


@njit(cache=True)
def _pass1_workspace(n_mask, extra):
    return 0  # the pass keeps its state in ``extra`` (one slice per thread)


@njit(cache=True)
def _pass1_reduce(acc, hull_to_mask, c, i, perm, ws, extra):
    """Exceedance counts, each voxel's K smallest values (thread ``c``'s slice), max ALE."""
    obs_log, top, top_id, counts, out_max = extra
    K = top.shape[2]
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
            insert_top(top[c, v], top_id[c, v], s, perm)
    out_max[i] = log_to_ale(min_log)


_pass1 = compile_pass("csale_pass1", _pass1_workspace, _pass1_reduce)


def pass1_chunk(
    perm_start,
    n_perm,
    n_threads,
    key,
    exp_kernel,
    exp_focus_start,
    cube_start,
    k_width,
    cube,
    cand_ijk,
    cdf,
    row_lookup,
    row_zlo,
    row_zhi,
    row_off,
    hull_to_mask,
    n_mask,
    obs_log,
    top,
    top_id,
    counts,
    out_max,
):
    """``top``, ``top_id`` (n_threads, n_mask, K) and ``counts`` (n_threads, n_mask) are per
    thread; a thread's permutations are consecutive, so equal values stay in permutation
    order within and (after :func:`merge_top`) across threads."""
    _pass1(
        perm_start,
        n_perm,
        n_threads,
        key,
        exp_kernel,
        exp_focus_start,
        cube_start,
        k_width,
        cube,
        cand_ijk,
        cdf,
        row_lookup,
        row_zlo,
        row_zhi,
        row_off,
        hull_to_mask,
        n_mask,
        (obs_log, top, top_id, counts, out_max),
    )


@njit(cache=True)
def _merge_two(a, a_id, b, b_id, K):
    """Per voxel, the K smallest of two ascending lists; on ties ``a`` comes first."""
    n_mask = a.shape[0]
    out = np.empty((n_mask, K), dtype=np.float32)
    out_id = np.empty((n_mask, K), dtype=np.int32)
    na, nb = a.shape[1], b.shape[1]
    for v in range(n_mask):
        i = 0
        j = 0
        for k in range(K):
            if j >= nb or (i < na and a[v, i] <= b[v, j]):
                out[v, k] = a[v, i]
                out_id[v, k] = a_id[v, i]
                i += 1
            else:
                out[v, k] = b[v, j]
                out_id[v, k] = b_id[v, j]
                j += 1
    return out, out_id


def merge_top(values: list, ids: list, K: int) -> tuple[np.ndarray, np.ndarray]:
    """The K smallest of several (n_mask, K_i) ascending lists per voxel, with their ids.

    Lists are given in permutation order and equal values keep that order, so the result
    does not depend on how permutations were split into threads and chunks. Memory stays
    at two (n_mask, K) arrays (no sort over the concatenation).
    """
    top = np.ascontiguousarray(values[0], dtype=np.float32)
    top_id = np.ascontiguousarray(ids[0], dtype=np.int32)
    if sum(v.shape[1] for v in values) < K:
        raise ValueError(f"fewer than K={K} values per voxel in the lists to merge")
    for vals, idx in zip(values[1:], ids[1:]):
        k = min(K, top.shape[1] + vals.shape[1])
        top, top_id = _merge_two(
            top,
            top_id,
            np.ascontiguousarray(vals, np.float32),
            np.ascontiguousarray(idx, np.int32),
            k,
        )
    return top[:, :K], top_id[:, :K]


@njit(cache=True)
def supra_lists(top, top_id, count_limit, n_perm):
    """Each permutation's supra-threshold voxels as CSR (indptr over permutations, voxels).

    Voxel v is supra in permutation j when null_j(v) < 0 (covered), is among v's kept values
    strictly below the K-th smallest, and max(#{i != j: null_i(v) <= null_j(v)}, 1) <
    ``count_limit`` (= voxel_thresh * (n_iters - 1)).
    """
    n_mask, K = top.shape
    indptr = np.zeros(n_perm + 1, dtype=np.int64)
    for sweep in range(2):
        if sweep == 1:
            for j in range(n_perm):
                indptr[j + 1] += indptr[j]
            fill = indptr[:-1].copy()
            vox = np.empty(indptr[n_perm], dtype=np.int32)
        for v in range(n_mask):
            last = top[v, K - 1]
            for k in range(K):
                s = top[v, k]
                if not (s < 0.0 and s < last):
                    break
                cnt = k + 1
                while cnt < K and top[v, cnt] <= s:
                    cnt += 1
                if max(cnt - 1, 1) >= count_limit:
                    break
                j = top_id[v, k]
                if sweep == 0:
                    indptr[j + 1] += 1
                else:
                    vox[fill[j]] = v
                    fill[j] += 1
    return indptr, vox


@njit(parallel=True, cache=True)
def cluster_sizes(indptr, vox, fwd, n_mask, n_threads, out_size):
    """Max cluster size (faces) of each permutation's supra-threshold voxel list."""
    n_perm = indptr.shape[0] - 1
    per = (n_perm + n_threads - 1) // n_threads
    for c in prange(n_threads):
        dummy = np.zeros(n_mask, dtype=np.float64)
        parent = np.full(n_mask, -1, dtype=np.int32)
        size = np.zeros(n_mask, dtype=np.int64)
        mass = np.zeros(n_mask, dtype=np.float64)
        for j in range(c * per, min(n_perm, (c + 1) * per)):
            n = indptr[j + 1] - indptr[j]
            supra = vox[indptr[j] : indptr[j + 1]]
            ms, _ = cluster_max(supra, n, dummy, 0.0, fwd, parent, size, mass)
            out_size[j] = ms


def cluster_null_sizes(
    top: np.ndarray,
    top_id: np.ndarray,
    count_limit: float,
    n_perm: int,
    fwd: np.ndarray,
    n_threads: int,
) -> np.ndarray:
    """Cluster-FWE null: the max cluster size of every permutation's thresholded p map."""
    n_mask = top.shape[0]
    out = np.zeros(n_perm, dtype=np.int64)
    if n_perm == 0 or n_mask == 0:
        return out
    indptr, vox = supra_lists(
        np.ascontiguousarray(top, np.float32),
        np.ascontiguousarray(top_id, np.int32),
        float(count_limit),
        int(n_perm),
    )
    n_threads = max(1, min(int(n_threads), numba.get_num_threads()))
    cluster_sizes(indptr, vox, fwd, n_mask, n_threads, out)
    return out
