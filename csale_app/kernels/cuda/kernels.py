"""CUDA device kernels (numba.cuda) of the permutation passes, compiled lazily once per
block size; :mod:`.backend` launches them batch by batch.

Same plan, same seed, same numbers as the CPU engine (:mod:`..cpu.ale`). A batch of permutations
runs as three kernels, then a short host step:

1. **draw** - one thread per (permutation, focus): the counter-based RNG of :mod:`..rng`
   (the *same* function bodies, compiled with ``cuda.jit(device=True)``) picks a candidate
   voxel; the focus' template ijk goes to ``fijk[batch, n_foci, 3]``.
2. **gather** - one thread per (permutation, mask voxel) builds that voxel's accumulator
   value, sum over experiments of min over foci of log(1 - k), and writes it to
   ``acc[batch, n_mask]`` (float32). Threads are grouped by *tiles* (small spatial bricks of
   mask voxels, one tile per block); per chunk of foci the block keeps, in order, only those
   whose kernel box reaches the tile's bounding box (a shared-memory prefix sum), and each
   thread walks that short list. Walking the foci in their global order (experiments are
   contiguous), each voxel forms the minimum of every experiment that reaches it and adds it
   with one float32 addition, in experiment order - exactly the additions the CPU scatter
   makes (:func:`..cpu.ale.null_log_sum`) - so the accumulator is bit-identical to the CPU's and
   no atomics are needed: the result depends neither on the batch size nor on the thread
   schedule.
3. **reduce** - one block per permutation: min of the accumulator (tree reduction in shared
   memory) and the list of supra-threshold voxels (``acc < log_thresh``), compacted with an
   atomic counter into a capped per-permutation list (stored as columns of a (cap, batch)
   array, so the host copies only the rows in use).

The host (:mod:`.host`) then sorts each (short) supra-threshold list, turns the minimum into
the max ALE and labels clusters with the CPU's union-find (:func:`..cpu.ale.cluster_max`),
with the very same expressions as the CPU pass; a permutation whose list overflowed the cap
is finished from its full accumulator row.

C-SALE's pass (:mod:`..cpu.csale`) reuses stages 1-2 and adds its own reduction: one thread
per mask voxel walks the batch's permutations *in order*, counts exceedances
(``acc <= obs_log``) and keeps the K smallest values and their permutation indices in
device arrays ``top[K, n_mask]``/``top_id[K, n_mask]`` (voxel-fastest, so the loads are
coalesced) by the same insertion as the CPU; the per-permutation minimum (max null ALE)
comes from the FWE reduce kernel. The cluster-FWE null is then read off the kept lists on
the host (:func:`..cpu.csale.cluster_null_sizes`), as for the CPU engine.

Counts, top values and ids, max ALE and cluster sizes equal the CPU's exactly, for any
batch size.

Everything runs under ``NUMBA_ENABLE_CUDASIM=1`` (slowly: keep problems tiny there).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from ..gaussian import KERNEL_BOX, KERNEL_HALF
from ..rng import compile_rng
from ..shared import compile_shared


@functools.lru_cache(maxsize=None)
def fwe_kernels(tpb: int):
    """(draw, gather, reduce) kernels for ``tpb`` threads per block (a power of two)."""
    _mix64, uniform01, draw_index = compile_rng(cuda.jit(device=True))
    box = KERNEL_BOX
    half = KERNEL_HALF

    @cuda.jit
    def draw_kernel(key, perm_start, n_perm, cand_ijk, cdf, fijk):
        """fijk[p, g] = template ijk of focus g of permutation perm_start + p."""
        n_foci = fijk.shape[1]
        idx = cuda.grid(1)
        if idx < n_perm * n_foci:
            p = idx // n_foci
            g = idx - p * n_foci
            u = uniform01(key, perm_start + p, g)
            c = draw_index(u, cdf, cand_ijk.shape[0])
            fijk[p, g, 0] = cand_ijk[c, 0]
            fijk[p, g, 1] = cand_ijk[c, 1]
            fijk[p, g, 2] = cand_ijk[c, 2]

    @cuda.jit
    def gather_kernel(fijk, focus_exp, focus_kid, k_half, boxes, tile_vox, tile_box, mask_ijk, acc):
        """acc[p, v] = sum_e min_{f in e} log(1 - k_f(v)), replaying the CPU's float32 ops."""
        tile = cuda.blockIdx.x
        p = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        scan = cuda.shared.array(tpb, dtype=np.int32)
        kept_i = cuda.shared.array(tpb, dtype=np.int32)
        kept_j = cuda.shared.array(tpb, dtype=np.int32)
        kept_k = cuda.shared.array(tpb, dtype=np.int32)
        kept_kid = cuda.shared.array(tpb, dtype=np.int32)
        kept_exp = cuda.shared.array(tpb, dtype=np.int32)
        n_foci = focus_exp.shape[0]
        v = tile_vox[tile, tid]
        vi = 0
        vj = 0
        vk = 0
        if v >= 0:
            vi = mask_ijk[v, 0]
            vj = mask_ijk[v, 1]
            vk = mask_ijk[v, 2]
        lo_i = tile_box[tile, 0]
        lo_j = tile_box[tile, 1]
        lo_k = tile_box[tile, 2]
        hi_i = tile_box[tile, 3]
        hi_j = tile_box[tile, 4]
        hi_k = tile_box[tile, 5]
        total = np.float32(0.0)
        cur_min = np.float32(0.0)
        cur_exp = -1
        for c0 in range(0, n_foci, tpb):
            # 1) which foci of this chunk can reach the tile (kernel box meets tile box)
            g = c0 + tid
            flag = 0
            fi = 0
            fj = 0
            fk = 0
            kid = 0
            if g < n_foci:
                kid = focus_kid[g]
                h = k_half[kid]
                fi = fijk[p, g, 0]
                fj = fijk[p, g, 1]
                fk = fijk[p, g, 2]
                if (
                    fi - h <= hi_i
                    and fi + h >= lo_i
                    and fj - h <= hi_j
                    and fj + h >= lo_j
                    and fk - h <= hi_k
                    and fk + h >= lo_k
                ):
                    flag = 1
            scan[tid] = flag
            cuda.syncthreads()
            # 2) inclusive prefix sum -> the kept foci, in order, staged in shared memory
            off = 1
            while off < tpb:
                add = 0
                if tid >= off:
                    add = scan[tid - off]
                cuda.syncthreads()
                scan[tid] += add
                cuda.syncthreads()
                off *= 2
            if flag == 1:
                slot = scan[tid] - 1
                kept_i[slot] = fi
                kept_j[slot] = fj
                kept_k[slot] = fk
                kept_kid[slot] = kid
                kept_exp[slot] = focus_exp[g]
            n_kept = scan[tpb - 1]
            cuda.syncthreads()
            # 3) each voxel walks the kept foci in global order
            if v >= 0:
                for j in range(n_kept):
                    di = vi - kept_i[j] + half
                    dj = vj - kept_j[j] + half
                    dk = vk - kept_k[j] + half
                    if di >= 0 and di < box and dj >= 0 and dj < box and dk >= 0 and dk < box:
                        val = boxes[kept_kid[j], di, dj, dk]
                        if val <= 0:
                            e = kept_exp[j]
                            if e != cur_exp:
                                total += cur_min  # the previous experiment's minimum
                                cur_exp = e
                                cur_min = val
                            elif val < cur_min:
                                cur_min = val
            cuda.syncthreads()
        if v >= 0:
            acc[p, v] = total + cur_min

    @cuda.jit
    def reduce_kernel(acc, log_thresh, out_min, counts, sidx, sval):
        """Per permutation (one block each): min of acc and the capped supra-threshold list."""
        p = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        red = cuda.shared.array(tpb, dtype=np.float32)
        n_mask = acc.shape[1]
        cap = sidx.shape[0]
        m = np.float32(0.0)
        for v in range(tid, n_mask, tpb):
            x = acc[p, v]
            if x < m:
                m = x
            if x < log_thresh:
                pos = cuda.atomic.add(counts, p, 1)
                if pos < cap:
                    sidx[pos, p] = v
                    sval[pos, p] = x
        red[tid] = m
        cuda.syncthreads()
        step = tpb // 2
        while step > 0:
            if tid < step:
                if red[tid + step] < red[tid]:
                    red[tid] = red[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            out_min[p] = red[0]

    return draw_kernel, gather_kernel, reduce_kernel


@functools.lru_cache(maxsize=None)
def csale_kernels(tpb: int):
    """The C-SALE pass kernel for ``tpb`` threads per block."""
    insert_top, _ = compile_shared(cuda.jit(device=True))

    @cuda.jit
    def pass1_kernel(acc, obs_log, perm0, top, top_id, counts):
        """Per voxel (one thread each): exceedance count and K smallest null values with
        their permutations (row p of ``acc`` is permutation perm0 + p).

        ``acc`` (n_perm, n_mask) is walked in permutation order, so the insertion into
        ``top`` (K, n_mask, ascending along K) replays the CPU's exactly.
        """
        v = cuda.grid(1)
        n_mask = acc.shape[1]
        K = top.shape[0]
        if v < n_mask:
            o = obs_log[v]
            c = 0
            last = top[K - 1, v]
            for p in range(acc.shape[0]):
                s = acc[p, v]
                if s <= o:
                    c += 1
                if s < last:
                    insert_top(top[:, v], top_id[:, v], s, perm0 + p)
                    last = top[K - 1, v]
            counts[v] += c

    return pass1_kernel
