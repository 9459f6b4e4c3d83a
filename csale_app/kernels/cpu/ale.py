"""CPU engine (numba): observed MA maps and the permutation pass.

One permutation = draw every experiment's foci from the sampler (counter-based RNG), add
each experiment's log(1 - MA) into a float32 accumulator over mask voxels, then one linear
scan of the mask gives the max ALE and the supra-threshold list, and union-find over that
list gives cluster sizes and masses (faces connectivity). A kernel-box row that no other
focus box of its experiment covers adds straight into the accumulator; the rows that
several boxes share form the per-experiment minimum of log(1 - k) (= max MA) in a scratch
array first. Permutations run in parallel chunks, one buffer set per chunk, and each
permutation depends only on (seed, index), so results do not depend on the thread count.
The parallel loop is written once (:func:`compile_pass`); the ALE FWE pass here and the
C-SALE pass (:mod:`.csale`) plug in what they do with each permutation's map.
"""

from __future__ import annotations

import types

import numba
import numpy as np
from numba import njit, prange

from ..gaussian import KERNEL_BOX
from ..plan import PAD
from ..rng import compile_rng
from ..scan import scan_accumulator
from ..shared import compile_shared

_mix64, uniform01, draw_index = compile_rng(njit(cache=True, inline="always"))
_insert_top, log_to_ale = compile_shared(njit(cache=True, inline="always"))


@njit(cache=True)
def ma_csr(foci_flat, foci_exp_start, exp_kernel, k_start, k_offsets, k_values, gridmap, n_mask):
    """Observed MA maps as CSR over mask voxels: per experiment, max over foci of the kernel.

    ``foci_flat`` are padded-grid flat indices; voxels outside the mask are dropped, like
    NiMARE's ``compute_ale_ma``. Returns (indptr, cols, vals) with cols sorted per row.
    """
    n_exp = exp_kernel.shape[0]
    scratch = np.zeros(n_mask + 1, dtype=np.float32)
    touched = np.empty(n_mask, dtype=np.int32)
    indptr = np.zeros(n_exp + 1, dtype=np.int64)
    cap = 1 << 16
    cols = np.empty(cap, dtype=np.int32)
    vals = np.empty(cap, dtype=np.float32)
    nnz = 0
    for e in range(n_exp):
        kid = exp_kernel[e]
        n_t = 0
        for f in range(foci_exp_start[e], foci_exp_start[e + 1]):
            base = foci_flat[f]
            for t in range(k_start[kid], k_start[kid + 1]):
                m = gridmap[base + k_offsets[t]]
                if m < n_mask:
                    v = k_values[t]
                    if scratch[m] == 0.0:
                        touched[n_t] = m
                        n_t += 1
                    if v > scratch[m]:
                        scratch[m] = v
        order = np.sort(touched[:n_t])
        if nnz + n_t > cap:
            while nnz + n_t > cap:
                cap *= 2
            cols2 = np.empty(cap, dtype=np.int32)
            vals2 = np.empty(cap, dtype=np.float32)
            cols2[:nnz] = cols[:nnz]
            vals2[:nnz] = vals[:nnz]
            cols, vals = cols2, vals2
        for i in range(n_t):
            m = order[i]
            cols[nnz] = m
            vals[nnz] = scratch[m]
            scratch[m] = 0.0
            nnz += 1
        indptr[e + 1] = nnz
    return indptr, cols[:nnz].copy(), vals[:nnz].copy()


@njit(cache=True, inline="always")
def _find(parent, v):
    root = v
    while parent[root] != root:
        root = parent[root]
    while parent[v] != root:  # path compression
        nxt = parent[v]
        parent[v] = root
        v = nxt
    return root


@njit(cache=True)
def max_foci_per_experiment(exp_focus_start):
    m = 1
    for e in range(exp_focus_start.shape[0] - 1):
        m = max(m, exp_focus_start[e + 1] - exp_focus_start[e])
    return m


@njit(cache=True, inline="always", fastmath=True)
def _scatter(
    fi, fj, fk, cs, w, cube, row_lookup, row_zlo, row_zhi, row_off, acc, scratch, shared, split
):
    """One focus's kernel into the row hull, row by row: a row flagged in ``shared`` (only
    looked at when ``split``) takes the minimum into ``scratch``, every other row adds
    straight into ``acc``.

    The inner loops index with uint64 so that numba drops its negative-index wraparound,
    which otherwise keeps LLVM from vectorising them (2-3x slower).
    """
    h = w // 2
    for a in range(w):
        pi = fi + a - h + PAD
        for b in range(w):
            r = row_lookup[pi, fj + b - h + PAD]
            if r < 0:
                continue
            zlo = row_zlo[r]
            z0 = max(fk - h, zlo)
            n = min(fk + h, row_zhi[r]) - z0 + 1
            if n <= 0:
                continue
            ob = np.uint64(row_off[r] - zlo + z0)
            ok = np.uint64(cs + (a * w + b) * w - (fk - h) + z0)
            if split and shared[a * w + b]:
                for t in range(n):
                    scratch[ob + np.uint64(t)] = min(
                        scratch[ob + np.uint64(t)], cube[ok + np.uint64(t)]
                    )
            else:
                for t in range(n):
                    acc[ob + np.uint64(t)] += cube[ok + np.uint64(t)]


@njit(cache=True, inline="always", fastmath=True)
def _flush(fi, fj, fk, w, row_lookup, row_zlo, row_zhi, row_off, scratch, acc, shared):
    """acc += scratch over one focus's shared rows, zeroing scratch (idempotent on overlaps)."""
    h = w // 2
    for a in range(w):
        pi = fi + a - h + PAD
        for b in range(w):
            if not shared[a * w + b]:
                continue
            r = row_lookup[pi, fj + b - h + PAD]
            if r < 0:
                continue
            zlo = row_zlo[r]
            z0 = max(fk - h, zlo)
            n = min(fk + h, row_zhi[r]) - z0 + 1
            if n <= 0:
                continue
            ob = np.uint64(row_off[r] - zlo + z0)
            for t in range(n):
                acc[ob + np.uint64(t)] += scratch[ob + np.uint64(t)]
                scratch[ob + np.uint64(t)] = 0.0


@njit(cache=True, inline="always")
def _mark_shared(shared, w, di, dj):
    """Flag the rows (a, b) of a focus's box that the box offset by (di, dj) also covers."""
    for a in range(max(0, di), min(w, w + di)):
        for b in range(max(0, dj), min(w, w + dj)):
            shared[a * w + b] = 1


@njit(cache=True)
def null_log_sum(
    perm,
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
    acc,
    scratch,
    f_ijk,
    shared,
):
    """acc (row hull) += sum over experiments of min over foci of log(1 - k), permutation perm.

    A kernel-box row (i, j) of a focus that no other focus box of its experiment covers
    adds straight into ``acc``; the rows that several boxes of the experiment cover (boxes
    that overlap in all three axes) form their minimum in ``scratch`` first, then flush it.
    Either way acc receives exactly one float32 addition per experiment and voxel, in
    experiment order, so the result does not depend on which path a row took. ``f_ijk`` is
    (max_foci, 4): i, j, k and an overlap flag; ``shared`` (max_foci, KERNEL_BOX**2) uint8
    flags the shared rows of each overlapping focus. (A row-by-row pass over each group of
    overlapping foci, taking the minimum in a row buffer, was tried and measured slower;
    sending whole overlapping boxes through scratch cost 0.6 ns per box voxel on pain.)
    """
    n_cand = cand_ijk.shape[0]
    for e in range(exp_kernel.shape[0]):
        kid = exp_kernel[e]
        first = exp_focus_start[e]
        nf = exp_focus_start[e + 1] - first
        for f in range(nf):
            c = draw_index(uniform01(key, perm, first + f), cdf, n_cand)
            f_ijk[f, 0] = cand_ijk[c, 0]
            f_ijk[f, 1] = cand_ijk[c, 1]
            f_ijk[f, 2] = cand_ijk[c, 2]
            f_ijk[f, 3] = 0
        w = k_width[kid]
        cs = cube_start[kid]
        n_overlap = 0
        for a in range(1, nf):
            for b in range(a):
                di = f_ijk[b, 0] - f_ijk[a, 0]
                dj = f_ijk[b, 1] - f_ijk[a, 1]
                if abs(di) < w and abs(dj) < w and abs(f_ijk[b, 2] - f_ijk[a, 2]) < w:
                    n_overlap += 1
                    for g in (a, b):
                        if f_ijk[g, 3] == 0:
                            f_ijk[g, 3] = 1
                            shared[g, : w * w] = 0
                    _mark_shared(shared[a], w, di, dj)
                    _mark_shared(shared[b], w, -di, -dj)
        for f in range(nf):
            _scatter(
                f_ijk[f, 0],
                f_ijk[f, 1],
                f_ijk[f, 2],
                cs,
                w,
                cube,
                row_lookup,
                row_zlo,
                row_zhi,
                row_off,
                acc,
                scratch,
                shared[f],
                f_ijk[f, 3] == 1,
            )
        if n_overlap == 0:
            continue
        for f in range(nf):
            if f_ijk[f, 3] == 1:
                _flush(
                    f_ijk[f, 0],
                    f_ijk[f, 1],
                    f_ijk[f, 2],
                    w,
                    row_lookup,
                    row_zlo,
                    row_zhi,
                    row_off,
                    scratch,
                    acc,
                    shared[f],
                )


@njit(cache=True)
def cluster_max(supra, n_supra, ale_of, thresh, fwd, parent, size, mass):
    """Max cluster size and mass (sum of ALE - thresh) over supra-threshold voxels."""
    for i in range(n_supra):
        parent[supra[i]] = supra[i]
    for i in range(n_supra):
        v = supra[i]
        for d in range(3):
            u = fwd[d, v]
            if u >= 0 and parent[u] >= 0:
                ru = _find(parent, u)
                rv = _find(parent, v)
                if ru != rv:
                    if ru < rv:
                        parent[rv] = ru
                    else:
                        parent[ru] = rv
    max_size = 0
    max_mass = 0.0
    for i in range(n_supra):
        r = _find(parent, supra[i])
        size[r] += 1
        mass[r] += ale_of[i] - thresh
    for i in range(n_supra):
        v = supra[i]
        if parent[v] == v:
            if size[v] > max_size:
                max_size = size[v]
            if mass[v] > max_mass:
                max_mass = mass[v]
    for i in range(n_supra):
        v = supra[i]
        size[v] = 0
        mass[v] = 0.0
    for i in range(n_supra):
        parent[supra[i]] = -1
    return max_size, max_mass


@njit(cache=True)
def focus_buffers(exp_focus_start, n_hull):
    """One thread's buffers for :func:`null_log_sum`: acc, scratch, f_ijk, shared."""
    max_foci = max_foci_per_experiment(exp_focus_start)
    return (
        np.zeros(n_hull, dtype=np.float32),
        np.zeros(n_hull, dtype=np.float32),
        np.empty((max_foci, 4), dtype=np.int32),
        np.empty((max_foci, KERNEL_BOX * KERNEL_BOX), dtype=np.uint8),
    )


def _pass_body(
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
    extra,
):
    """The one copy of the parallel loop; :func:`compile_pass` binds ``_workspace`` and
    ``_reduce`` (the names below are placeholders in this module)."""
    per = (n_perm + n_threads - 1) // n_threads
    for c in prange(n_threads):
        acc, scratch, f_ijk, shared = focus_buffers(exp_focus_start, hull_to_mask.shape[0])
        ws = _workspace(n_mask, extra)
        for i in range(c * per, min(n_perm, (c + 1) * per)):
            perm = perm_start + i
            null_log_sum(
                perm,
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
                acc,
                scratch,
                f_ijk,
                shared,
            )
            _reduce(acc, hull_to_mask, c, i, perm, ws, extra)


_workspace = _reduce = None  # bound per pass by compile_pass


def compile_pass(name, workspace, reduce):
    """The permutation pass, written once: ``reduce`` is what a pass does with each map.

    Permutations [perm_start, perm_start + n_perm) are split into ``n_threads`` consecutive
    runs; each thread draws and sums a permutation into its accumulator (draw -> per
    experiment scatter, :func:`null_log_sum`), then calls ``reduce(acc, hull_to_mask, c, i,
    perm, ws, extra)``, which must read the accumulator and leave it zeroed. ``ws =
    workspace(n_mask, extra)`` is the thread's own scratch for the reduction and ``extra``
    a tuple of the pass's own inputs and outputs. Both are njit functions; the ALE FWE pass
    (:func:`fwe_null_chunk`) and the C-SALE pass (:func:`..csale.pass1_chunk`) are the two
    uses, as :func:`..rng.compile_rng` compiles one RNG for every backend.

    The pass is :func:`_pass_body`'s code with the two functions bound as *globals*, not
    closed over: numba's cache keys a closure on its cells, and a dispatcher pickles with a
    per-process id, so a closure would be compiled again in every process (about 10 s).
    ``name`` gives each pass its own cache file.
    """
    glb = dict(_pass_body.__globals__, _workspace=workspace, _reduce=reduce)
    fn = types.FunctionType(_pass_body.__code__, glb, name)
    fn.__qualname__ = name
    fn.__doc__ = f"{name}: :func:`_pass_body` with ``{reduce.__name__}``."
    return njit(parallel=True, cache=True)(fn)


@njit(cache=True)
def _fwe_workspace(n_mask, extra):
    """supra, ale_of, parent, size, mass: the cluster labelling's buffers."""
    return (
        np.empty(n_mask, dtype=np.int32),
        np.empty(n_mask, dtype=np.float64),
        np.full(n_mask, -1, dtype=np.int32),
        np.zeros(n_mask, dtype=np.int64),
        np.zeros(n_mask, dtype=np.float64),
    )


@njit(cache=True)
def _fwe_reduce(acc, hull_to_mask, c, i, perm, ws, extra):
    """Max ALE, and max cluster size and mass above the threshold, of one permutation."""
    supra, ale_of, parent, size, mass = ws
    fwd, log_thresh, ale_thresh, out_max, out_size, out_mass = extra
    min_log, n_supra = scan_accumulator(acc, hull_to_mask, log_thresh, supra, ale_of)
    out_max[i] = log_to_ale(min_log)
    ms, mm = cluster_max(supra, n_supra, ale_of, ale_thresh, fwd, parent, size, mass)
    out_size[i] = ms
    out_mass[i] = mm


_fwe_pass = compile_pass("fwe_pass", _fwe_workspace, _fwe_reduce)


def fwe_null_chunk(
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
    fwd,
    log_thresh,
    ale_thresh,
    out_max,
    out_size,
    out_mass,
):
    """ALE Monte Carlo FWE null for permutations [perm_start, perm_start + n_perm)."""
    _fwe_pass(
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
        (fwd, np.float32(log_thresh), float(ale_thresh), out_max, out_size, out_mass),
    )


def set_threads(n: int | None) -> int:
    """Use ``n`` numba threads (None: all; clamped to what numba was started with)."""
    n = numba.config.NUMBA_NUM_THREADS if n is None else n
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


@njit(cache=True)
def kernel_sum(foci_flat, focus_kernel, k_start, k_offsets, k_values, gridmap, n_mask):
    """Sum (not max) of every focus's kernel over mask voxels: the base-rate numerator."""
    out = np.zeros(n_mask + 1, dtype=np.float64)
    for f in range(foci_flat.shape[0]):
        kid = focus_kernel[f]
        base = foci_flat[f]
        for t in range(k_start[kid], k_start[kid + 1]):
            out[gridmap[base + k_offsets[t]]] += k_values[t]
    return out[:n_mask]


@njit(cache=True)
def null_log_maps(
    perm_start,
    n_perm,
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
):
    """Full accumulator maps of permutations (n_perm, n_mask): for tests and small problems."""
    out = np.zeros((n_perm, n_mask), dtype=np.float32)
    n_hull = hull_to_mask.shape[0]
    acc, scratch, f_ijk, shared = focus_buffers(exp_focus_start, n_hull)
    for i in range(n_perm):
        null_log_sum(
            perm_start + i,
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
            acc,
            scratch,
            f_ijk,
            shared,
        )
        for hx in range(n_hull):
            v = hull_to_mask[hx]
            if v >= 0:
                out[i, v] = acc[hx]
            acc[hx] = 0.0
    return out
