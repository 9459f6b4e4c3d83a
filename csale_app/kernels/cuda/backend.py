"""CUDA engine (numba.cuda): the permutation pass on an NVIDIA GPU.

Same plan, same seed, same numbers as the CPU engine (:mod:`.cpu`). A batch of permutations
runs as three kernels, then a short host step:

1. **draw** - one thread per (permutation, focus): the counter-based RNG of :mod:`.rng`
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
   makes (:func:`.cpu.null_log_sum`) - so the accumulator is bit-identical to the CPU's and
   no atomics are needed: the result depends neither on the batch size nor on the thread
   schedule.
3. **reduce** - one block per permutation: min of the accumulator (tree reduction in shared
   memory) and the list of supra-threshold voxels (``acc < log_thresh``), compacted with an
   atomic counter into a capped per-permutation list (stored as columns of a (cap, batch)
   array, so the host copies only the rows in use).

The host then sorts each (short) supra-threshold list, turns the minimum into the max ALE and
labels clusters with the CPU's union-find (:func:`.cpu.cluster_max`), with the very same
expressions as the CPU pass; a permutation whose list overflowed the cap is finished from its
full accumulator row.

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

import contextlib
import functools
import math
import os
import warnings

import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from ..cpu import ale as cpu
from ..gaussian import KERNEL_BOX, KERNEL_HALF
from ..plan import NullPlan
from ..rng import compile_rng
from ..shared import compile_shared
from .host import (_NOT_IN_SUPPORT, TILE_SHAPES, _finish_batch,  # noqa: F401
                        _finish_row, _max_ale, _offsets_ijk, build_tiles, dense_log_boxes,
                        parse_batch_size)

#: threads per block on a real GPU and under the simulator (each simulated thread is a
#: Python thread, so small blocks - fewer idle slots in the spatial tiles, cheaper
#: syncthreads - are much faster there)
TPB_GPU = 128
TPB_SIM = 16
#: brick shape (i, j, k) of a tile for each block size; k (the fastest axis) is the longest
#: largest batch the launch geometry allows (grid y dimension) and a practical cap
MAX_BATCH = 4096
MAX_BATCH_SIM = 16
#: per-permutation capacity of the device supra-threshold list (overflow: host fallback)
SUPRA_CAP = 8192
#: share of free device memory a batch may use when the batch size is "auto"
MEMORY_SHARE = 0.5



def simulator_enabled() -> bool:
    """True when numba's CUDA simulator replaces the real device (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        import numba

        return bool(getattr(numba.config, "ENABLE_CUDASIM", 0))
    except Exception:  # pragma: no cover - numba is a hard dependency
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


# --------------------------------------------------------------------------------------------
# device kernels (compiled lazily, once per block size)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _kernels(tpb: int):
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
    def gather_kernel(fijk, focus_exp, focus_kid, k_half, boxes, tile_vox, tile_box, mask_ijk,
                      acc):
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
                if (fi - h <= hi_i and fi + h >= lo_i and fj - h <= hi_j and fj + h >= lo_j
                        and fk - h <= hi_k and fk + h >= lo_k):
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
def _csale_kernels(tpb: int):
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


class _DevicePlan:
    """A plan's fixed arrays uploaded to the device (built once per plan)."""

    def __init__(self, plan: NullPlan, tpb: int):
        g, s = plan.grid, plan.sampler
        self.plan = plan
        self.n_mask = g.n_mask
        self.n_foci = plan.n_foci
        starts = np.asarray(plan.exp_focus_start, dtype=np.int64)
        focus_exp = np.repeat(np.arange(plan.n_experiments, dtype=np.int32), np.diff(starts))
        focus_kid = np.asarray(plan.exp_kernel, dtype=np.int32)[focus_exp]
        boxes, half = dense_log_boxes(plan)
        tile_vox, tile_box = build_tiles(g.mask_ijk, tpb)
        self.n_tiles = tile_vox.shape[0]
        self.focus_exp = cuda.to_device(focus_exp)
        self.focus_kid = cuda.to_device(focus_kid.astype(np.int32))
        self.k_half = cuda.to_device(half)
        self.boxes = cuda.to_device(boxes)
        self.tile_vox = cuda.to_device(tile_vox)
        self.tile_box = cuda.to_device(tile_box)
        self.mask_ijk = cuda.to_device(np.ascontiguousarray(g.mask_ijk, dtype=np.int32))
        self.cand_ijk = cuda.to_device(np.ascontiguousarray(s.ijk, dtype=np.int32))
        self.cdf = cuda.to_device(np.ascontiguousarray(s.cdf, dtype=np.float64))
        self.key = np.uint64(plan.key)
        self.device_bytes = int(boxes.nbytes + tile_vox.nbytes + tile_box.nbytes
                                + g.mask_ijk.nbytes + s.ijk.nbytes + s.cdf.nbytes
                                + focus_exp.nbytes * 2)


class CUDABackend:
    """Permutation engine on one NVIDIA GPU; same interface and results as ``CPUBackend``."""

    name = "cuda"

    def __init__(self, gpu_id: int = 0, batch_size="auto", threads_per_block: int | None = None,
                 n_threads: int | None = 1):
        self.simulated = simulator_enabled()
        # host-side work (the C-SALE cluster null, cpu.csale.cluster_null_sizes) uses
        # --nprocs CPU threads, as on the CPU backend
        self.n_threads = cpu.set_threads(n_threads)
        self.gpu_id = int(gpu_id or 0)
        self._batch = parse_batch_size(batch_size)
        n_dev = len(cuda.gpus)
        if not 0 <= self.gpu_id < n_dev:
            raise ValueError(f"--gpu-id {self.gpu_id}: {n_dev} CUDA device(s) visible")
        cuda.select_device(self.gpu_id)
        name = getattr(cuda.gpus[self.gpu_id], "name", None)
        if name is None:
            name = "numba CUDA simulator" if self.simulated else "unknown CUDA device"
        self.device_name = name.decode() if isinstance(name, bytes) else str(name)
        tpb = threads_per_block or (TPB_SIM if self.simulated else TPB_GPU)
        if tpb not in TILE_SHAPES:
            raise ValueError(f"threads_per_block must be one of {sorted(TILE_SHAPES)}")
        self.tpb = tpb
        self.supra_cap = SUPRA_CAP
        self._dplan: _DevicePlan | None = None
        self.last_batch_size: int | None = None

    # ---------------------------------------------------------------- description and sizing
    def describe(self) -> str:
        sim = ", simulator" if self.simulated else ""
        batch = "auto" if self._batch is None else str(self._batch)
        return f"CUDA GPU {self.gpu_id}: {self.device_name} (numba.cuda{sim}, batch {batch})"

    mem_limit_bytes: float | None = None  # --mem: cap on the device memory a batch may use
    fallback_reason: str | None = None

    def free_memory(self) -> float:
        free, _total = cuda.current_context().get_memory_info()
        if self.mem_limit_bytes is not None:
            return float(min(free, self.mem_limit_bytes))
        return float(free)

    def bytes_per_permutation(self, plan: NullPlan) -> int:
        cap = min(self.supra_cap, max(plan.grid.n_mask, 1))
        return 4 * plan.grid.n_mask + 12 * plan.n_foci + 8 * cap + 16

    def batch_size_for(self, plan: NullPlan, count: int) -> int:
        """Permutations per launch: the given batch size, or what fits in free memory."""
        limit = MAX_BATCH_SIM if self.simulated else MAX_BATCH
        if self._batch is not None:
            return max(1, min(self._batch, count, MAX_BATCH))
        free = self.free_memory()
        if not math.isfinite(free):
            n = limit
        else:
            n = int(MEMORY_SHARE * free // self.bytes_per_permutation(plan))
        return max(1, min(n, limit, count))

    # ---------------------------------------------------------------- stages
    def _device_plan(self, plan: NullPlan) -> _DevicePlan:
        if self._dplan is None or self._dplan.plan is not plan:
            self._dplan = None  # free the previous plan's arrays first
            self._dplan = _DevicePlan(plan, self.tpb)
        return self._dplan

    @contextlib.contextmanager
    def _quiet(self):
        """The simulator runs the uint64 hash in numpy scalars, which warn on (intended)
        wrap-around; silence that there only."""
        if not self.simulated:
            yield
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="overflow encountered",
                                    category=RuntimeWarning)
            yield

    def draw_batch(self, plan: NullPlan, start: int, n_perm: int, out=None):
        """Device array (n_perm, n_foci, 3) int32: the null foci of permutations start.."""
        dp = self._device_plan(plan)
        draw, _, _ = _kernels(self.tpb)
        fijk = out if out is not None else cuda.device_array((n_perm, dp.n_foci, 3), np.int32)
        n = n_perm * dp.n_foci
        if n > 0:
            blocks = (n + self.tpb - 1) // self.tpb
            with self._quiet():
                draw[blocks, self.tpb](dp.key, np.int64(start), np.int64(n_perm), dp.cand_ijk,
                                       dp.cdf, fijk)
        return fijk

    def draw_foci(self, plan: NullPlan, start: int, count: int) -> np.ndarray:
        """Host copy of the null foci (count, n_foci, 3) int32 template ijk (for checks)."""
        return self.draw_batch(plan, start, count).copy_to_host()

    def log_sum_batch(self, plan: NullPlan, start: int, n_perm: int, fijk=None, acc=None):
        """Device array (n_perm, n_mask) float32: sum over experiments of log(1 - MA) of each
        permutation, bit-identical to the CPU accumulator. Building block for every pass."""
        dp = self._device_plan(plan)
        _, gather, _ = _kernels(self.tpb)
        if fijk is None:
            fijk = self.draw_batch(plan, start, n_perm)
        if acc is None:
            acc = cuda.device_array((n_perm, dp.n_mask), np.float32)
        if dp.n_tiles > 0 and n_perm > 0:
            gather[(dp.n_tiles, n_perm), self.tpb](
                fijk, dp.focus_exp, dp.focus_kid, dp.k_half, dp.boxes, dp.tile_vox,
                dp.tile_box, dp.mask_ijk, acc)
        return acc

    # ---------------------------------------------------------------- passes
    def fwe_chunk(self, plan: NullPlan, start: int, count: int, ale_thresh: float):
        """Monte Carlo FWE null of permutations [start, start + count): max ALE, max cluster
        size and max cluster mass, exactly as ``CPUBackend.fwe_chunk``."""
        from ..engine import log_threshold

        count = int(count)
        out_max = np.zeros(count, dtype=np.float64)
        out_size = np.zeros(count, dtype=np.int64)
        out_mass = np.zeros(count, dtype=np.float64)
        if count == 0:
            return {"max": out_max, "size": out_size, "mass": out_mass}
        g = plan.grid
        n_mask = g.n_mask
        if n_mask == 0:
            return {"max": out_max, "size": out_size, "mass": out_mass}
        dp = self._device_plan(plan)
        _, _, reduce = _kernels(self.tpb)
        log_thresh = log_threshold(ale_thresh)
        ale_thresh = float(ale_thresh)
        batch = self.batch_size_for(plan, count)
        self.last_batch_size = batch
        cap = min(self.supra_cap, n_mask)
        fwd = g.forward_neighbours
        parent = np.full(n_mask, -1, dtype=np.int32)
        size = np.zeros(n_mask, dtype=np.int64)
        mass = np.zeros(n_mask, dtype=np.float64)
        fijk = cuda.device_array((batch, dp.n_foci, 3), np.int32)
        acc = cuda.device_array((batch, n_mask), np.float32)
        out_min_d = cuda.device_array(batch, np.float32)
        counts_d = cuda.device_array(batch, np.int32)
        sidx_d = cuda.device_array((cap, batch), np.int32)  # column p: permutation p
        sval_d = cuda.device_array((cap, batch), np.float32)
        zeros = np.zeros(batch, dtype=np.int32)
        for b0 in range(0, count, batch):
            nb = min(batch, count - b0)
            f_b, a_b = fijk[:nb], acc[:nb]
            self.draw_batch(plan, start + b0, nb, out=f_b)
            self.log_sum_batch(plan, start + b0, nb, fijk=f_b, acc=a_b)
            counts_d.copy_to_device(zeros)
            reduce[nb, self.tpb](a_b, log_thresh, out_min_d, counts_d, sidx_d, sval_d)
            min_log = out_min_d.copy_to_host()[:nb]
            counts = counts_d.copy_to_host()[:nb]
            # copy only the rows in use (contiguous); n_rows < cap means no list overflowed,
            # n_rows == cap means exactly the lists with count > cap did
            n_rows = int(min(counts.max(), cap))
            if n_rows > 0:
                sidx = sidx_d[:n_rows].copy_to_host()[:, :nb]
                sval = sval_d[:n_rows].copy_to_host()[:, :nb]
            else:
                sidx = np.zeros((0, nb), np.int32)
                sval = np.zeros((0, nb), np.float32)
            _finish_batch(min_log, counts, sidx, sval, ale_thresh, fwd, parent, size, mass,
                          out_max, out_size, out_mass, b0)
            for p in np.flatnonzero(counts > cap):
                row = acc[int(p)].copy_to_host()
                ms, mm = _finish_row(row, log_thresh, ale_thresh, fwd, parent, size, mass)
                out_size[b0 + p] = ms
                out_mass[b0 + p] = mm
        return {"max": out_max, "size": out_size, "mass": out_mass}

    def _acc_batches(self, plan: NullPlan, start: int, count: int):
        """Yield (offset, n, acc) per batch: acc is the (n, n_mask) device accumulator of
        permutations start + offset ...; buffers are reused, so use each before the next."""
        dp = self._device_plan(plan)
        batch = self.batch_size_for(plan, count)
        self.last_batch_size = batch
        fijk = cuda.device_array((batch, dp.n_foci, 3), np.int32)
        acc = cuda.device_array((batch, dp.n_mask), np.float32)
        for b0 in range(0, count, batch):
            nb = min(batch, count - b0)
            f_b, a_b = fijk[:nb], acc[:nb]
            self.draw_batch(plan, start + b0, nb, out=f_b)
            self.log_sum_batch(plan, start + b0, nb, fijk=f_b, acc=a_b)
            yield b0, nb, a_b

    def csale_pass1_chunk(self, plan: NullPlan, start: int, count: int, obs_log: np.ndarray,
                          K: int):
        """Exceedance counts, per-voxel K smallest null log values (ascending, padded with
        0.0) with their permutations (padded with -1) and max null ALE of permutations
        [start, start + count), exactly as ``CPUBackend.csale_pass1_chunk``."""
        count = int(count)
        K = int(K)
        if K < 1:
            raise ValueError(f"K must be >= 1, not {K}")
        n_mask = plan.grid.n_mask
        out_max = np.zeros(count, dtype=np.float64)
        if count == 0 or n_mask == 0:
            return {"counts": np.zeros(n_mask, np.int64),
                    "top": np.zeros((n_mask, K), np.float32),
                    "top_id": np.full((n_mask, K), -1, np.int32), "max": out_max}
        self._device_plan(plan)
        _, _, reduce = _kernels(self.tpb)
        pass1 = _csale_kernels(self.tpb)
        obs_d = cuda.to_device(np.ascontiguousarray(obs_log, dtype=np.float32).reshape(-1))
        if obs_d.shape[0] != n_mask:
            raise ValueError(f"obs_log has {obs_d.shape[0]} values, the mask {n_mask} voxels")
        top_d = cuda.to_device(np.zeros((K, n_mask), np.float32))  # before sizing batches
        top_id_d = cuda.to_device(np.full((K, n_mask), -1, np.int32))
        counts_d = cuda.to_device(np.zeros(n_mask, np.int64))
        out_min_d = None
        no_thresh = np.float32(-np.inf)  # the reduce kernel then only takes the minimum
        vox_blocks = (n_mask + self.tpb - 1) // self.tpb
        for b0, nb, a_b in self._acc_batches(plan, start, count):
            if out_min_d is None:
                batch = self.last_batch_size
                out_min_d = cuda.device_array(batch, np.float32)
                n_supra_d = cuda.device_array(batch, np.int32)
                sidx_d = cuda.device_array((1, batch), np.int32)
                sval_d = cuda.device_array((1, batch), np.float32)
            pass1[vox_blocks, self.tpb](a_b, obs_d, np.int32(start + b0), top_d, top_id_d,
                                        counts_d)
            reduce[nb, self.tpb](a_b, no_thresh, out_min_d, n_supra_d, sidx_d, sval_d)
            _max_ale(out_min_d.copy_to_host()[:nb], out_max, b0)
        top = np.ascontiguousarray(top_d.copy_to_host().T)
        top_id = np.ascontiguousarray(top_id_d.copy_to_host().T)
        return {"counts": counts_d.copy_to_host(), "top": top, "top_id": top_id,
                "max": out_max}
