"""CUDA engine (numba.cuda): the permutation passes on an NVIDIA GPU.

Same plan, same seed, same numbers as the CPU engine. :class:`CUDABackend` runs every pass
through one batch loop (:meth:`CUDABackend.accumulator_batches`: draw the batch's null foci,
gather its accumulator rows, both with the kernels of :mod:`.kernels`); the FWE pass then
reduces each row on the device (minimum and capped supra-threshold list) and finishes the
cluster statistics on the host (:mod:`.host`), the C-SALE pass updates each voxel's count and
K smallest values on the device. Counts, top values and ids, max ALE and cluster sizes equal
the CPU's exactly, for any batch size.

Everything runs under ``NUMBA_ENABLE_CUDASIM=1`` (slowly: keep problems tiny there).
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from ..backend_spec import BackendSpec, simulator_enabled
from ..cpu import ale as cpu
from ..plan import NullPlan
from .host import TILE_SHAPES, build_tiles, dense_log_boxes, finish_batch, finish_row, max_ale
from .kernels import csale_kernels, fwe_kernels

#: threads per block on a real GPU and under the simulator (each simulated thread is a
#: Python thread, so small blocks - fewer idle slots in the spatial tiles, cheaper
#: syncthreads - are much faster there)
TPB_GPU = 128
TPB_SIM = 16
#: largest batch the launch geometry allows (grid y dimension) and a practical cap
MAX_BATCH = 4096
MAX_BATCH_SIM = 16
#: per-permutation capacity of the device supra-threshold list (overflow: host fallback)
SUPRA_CAP = 8192
#: share of free device memory a batch may use when the batch size is "auto"
MEMORY_SHARE = 0.5


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
        self.device_bytes = int(
            boxes.nbytes
            + tile_vox.nbytes
            + tile_box.nbytes
            + g.mask_ijk.nbytes
            + s.ijk.nbytes
            + s.cdf.nbytes
            + focus_exp.nbytes * 2
        )


class _Reductions:
    """Device buffers of the reduce kernel for batches of up to ``batch`` permutations, with
    a supra-threshold list of ``cap`` voxels per permutation (stored as columns of a
    (cap, batch) array, so that the host copies only the rows in use)."""

    def __init__(self, batch: int, cap: int):
        self.out_min = cuda.device_array(batch, np.float32)
        self.counts = cuda.device_array(batch, np.int32)
        self.sidx = cuda.device_array((cap, batch), np.int32)  # column p: permutation p
        self.sval = cuda.device_array((cap, batch), np.float32)
        self._zeros = np.zeros(batch, dtype=np.int32)

    def run(self, reduce, tpb: int, acc, log_thresh) -> tuple[np.ndarray, np.ndarray]:
        """Reduce the (n, n_mask) accumulator ``acc``: host copies of each permutation's
        minimum and supra-threshold count (lists in ``sidx``/``sval``, capped)."""
        nb = acc.shape[0]
        self.counts.copy_to_device(self._zeros)
        reduce[nb, tpb](acc, log_thresh, self.out_min, self.counts, self.sidx, self.sval)
        return self.out_min.copy_to_host()[:nb], self.counts.copy_to_host()[:nb]

    def lists(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host copies (rows, n) of the supra-threshold lists: only the rows in use
        (contiguous); rows < cap means no list overflowed, rows == cap means exactly the
        lists with count > cap did."""
        nb = counts.shape[0]
        n_rows = int(min(counts.max(), self.sidx.shape[0]))
        if n_rows == 0:
            return np.zeros((0, nb), np.int32), np.zeros((0, nb), np.float32)
        return (
            self.sidx[:n_rows].copy_to_host()[:, :nb],
            self.sval[:n_rows].copy_to_host()[:, :nb],
        )


class CUDABackend:
    """Permutation engine on one NVIDIA GPU; same interface and results as ``CPUBackend``.

    Built whole from a :class:`~csale_app.kernels.backend_spec.BackendSpec` (device index,
    host threads, batch size, memory cap); ``threads_per_block`` and ``supra_cap`` are tuning
    knobs for tests and benchmarks."""

    name = "cuda"
    fallback_reason: str | None = None

    def __init__(
        self,
        spec: BackendSpec | None = None,
        threads_per_block: int | None = None,
        supra_cap: int = SUPRA_CAP,
    ):
        spec = BackendSpec(device="cuda") if spec is None else spec
        self.spec = spec
        self.simulated = simulator_enabled()
        # host-side work (the C-SALE cluster null, cpu.csale.cluster_null_sizes) uses
        # --nprocs CPU threads, as on the CPU backend
        self.n_threads = cpu.set_threads(spec.n_threads)
        self.gpu_id = int(spec.gpu_id)
        self.mem_limit_bytes = spec.mem_limit_bytes
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
        self.supra_cap = int(supra_cap)
        self._dplan: _DevicePlan | None = None
        self.last_batch_size: int | None = None

    # ---------------------------------------------------------------- description and sizing
    def describe(self) -> str:
        sim = ", simulator" if self.simulated else ""
        batch = "auto" if self.spec.batch_size is None else str(self.spec.batch_size)
        return f"CUDA GPU {self.gpu_id}: {self.device_name} (numba.cuda{sim}, batch {batch})"

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
        if self.spec.batch_size is not None:
            return max(1, min(self.spec.batch_size, count, MAX_BATCH))
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
            warnings.filterwarnings(
                "ignore", message="overflow encountered", category=RuntimeWarning
            )
            yield

    def draw_batch(self, plan: NullPlan, start: int, n_perm: int, out=None):
        """Device array (n_perm, n_foci, 3) int32: the null foci of permutations start.."""
        dp = self._device_plan(plan)
        draw, _, _ = fwe_kernels(self.tpb)
        fijk = out if out is not None else cuda.device_array((n_perm, dp.n_foci, 3), np.int32)
        n = n_perm * dp.n_foci
        if n > 0:
            blocks = (n + self.tpb - 1) // self.tpb
            with self._quiet():
                draw[blocks, self.tpb](
                    dp.key, np.int64(start), np.int64(n_perm), dp.cand_ijk, dp.cdf, fijk
                )
        return fijk

    def draw_foci(self, plan: NullPlan, start: int, count: int) -> np.ndarray:
        """Host copy of the null foci (count, n_foci, 3) int32 template ijk (for checks)."""
        return self.draw_batch(plan, start, count).copy_to_host()

    def log_sum_batch(self, plan: NullPlan, start: int, n_perm: int, fijk=None, acc=None):
        """Device array (n_perm, n_mask) float32: sum over experiments of log(1 - MA) of each
        permutation, bit-identical to the CPU accumulator. Building block for every pass."""
        dp = self._device_plan(plan)
        _, gather, _ = fwe_kernels(self.tpb)
        if fijk is None:
            fijk = self.draw_batch(plan, start, n_perm)
        if acc is None:
            acc = cuda.device_array((n_perm, dp.n_mask), np.float32)
        if dp.n_tiles > 0 and n_perm > 0:
            gather[(dp.n_tiles, n_perm), self.tpb](
                fijk,
                dp.focus_exp,
                dp.focus_kid,
                dp.k_half,
                dp.boxes,
                dp.tile_vox,
                dp.tile_box,
                dp.mask_ijk,
                acc,
            )
        return acc

    def accumulator_batches(self, plan: NullPlan, start: int, count: int):
        """The batch size for permutations [start, start + count) and an iterator of
        (offset, acc): ``acc`` is the (n, n_mask) device accumulator of permutations
        start + offset ... (n <= batch). The one batch loop of every pass; buffers are
        reused, so use each ``acc`` before taking the next."""
        dp = self._device_plan(plan)
        batch = self.batch_size_for(plan, count)
        self.last_batch_size = batch
        fijk = cuda.device_array((batch, dp.n_foci, 3), np.int32)
        acc = cuda.device_array((batch, dp.n_mask), np.float32)

        def batches():
            for b0 in range(0, count, batch):
                nb = min(batch, count - b0)
                f_b, a_b = fijk[:nb], acc[:nb]
                self.draw_batch(plan, start + b0, nb, out=f_b)
                self.log_sum_batch(plan, start + b0, nb, fijk=f_b, acc=a_b)
                yield b0, a_b

        return batch, batches()

    # ---------------------------------------------------------------- passes
    def fwe_chunk(self, plan: NullPlan, start: int, count: int, ale_thresh: float):
        """Monte Carlo FWE null of permutations [start, start + count): max ALE, max cluster
        size and max cluster mass, exactly as ``CPUBackend.fwe_chunk``."""
        from ..engine import log_threshold

        count = int(count)
        out_max = np.zeros(count, dtype=np.float64)
        out_size = np.zeros(count, dtype=np.int64)
        out_mass = np.zeros(count, dtype=np.float64)
        g = plan.grid
        n_mask = g.n_mask
        if count == 0 or n_mask == 0:
            return {"max": out_max, "size": out_size, "mass": out_mass}
        _, _, reduce = fwe_kernels(self.tpb)
        log_thresh = log_threshold(ale_thresh)
        ale_thresh = float(ale_thresh)
        cap = min(self.supra_cap, n_mask)
        fwd = g.forward_neighbours
        parent = np.full(n_mask, -1, dtype=np.int32)
        size = np.zeros(n_mask, dtype=np.int64)
        mass = np.zeros(n_mask, dtype=np.float64)
        batch, batches = self.accumulator_batches(plan, start, count)
        red = _Reductions(batch, cap)
        for b0, a_b in batches:
            min_log, counts = red.run(reduce, self.tpb, a_b, log_thresh)
            sidx, sval = red.lists(counts)
            finish_batch(
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
                b0,
            )
            for p in np.flatnonzero(counts > cap):
                row = a_b[int(p)].copy_to_host()
                ms, mm = finish_row(row, log_thresh, ale_thresh, fwd, parent, size, mass)
                out_size[b0 + p] = ms
                out_mass[b0 + p] = mm
        return {"max": out_max, "size": out_size, "mass": out_mass}

    def csale_pass1_chunk(
        self, plan: NullPlan, start: int, count: int, obs_log: np.ndarray, K: int
    ):
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
            return {
                "counts": np.zeros(n_mask, np.int64),
                "top": np.zeros((n_mask, K), np.float32),
                "top_id": np.full((n_mask, K), -1, np.int32),
                "max": out_max,
            }
        self._device_plan(plan)
        _, _, reduce = fwe_kernels(self.tpb)
        pass1 = csale_kernels(self.tpb)
        obs_d = cuda.to_device(np.ascontiguousarray(obs_log, dtype=np.float32).reshape(-1))
        if obs_d.shape[0] != n_mask:
            raise ValueError(f"obs_log has {obs_d.shape[0]} values, the mask {n_mask} voxels")
        top_d = cuda.to_device(np.zeros((K, n_mask), np.float32))  # before sizing batches
        top_id_d = cuda.to_device(np.full((K, n_mask), -1, np.int32))
        counts_d = cuda.to_device(np.zeros(n_mask, np.int64))
        no_thresh = np.float32(-np.inf)  # the reduce kernel then only takes the minimum
        vox_blocks = (n_mask + self.tpb - 1) // self.tpb
        batch, batches = self.accumulator_batches(plan, start, count)
        red = _Reductions(batch, 1)
        for b0, a_b in batches:
            pass1[vox_blocks, self.tpb](a_b, obs_d, np.int32(start + b0), top_d, top_id_d, counts_d)
            min_log, _ = red.run(reduce, self.tpb, a_b, no_thresh)
            max_ale(min_log, out_max, b0)
        top = np.ascontiguousarray(top_d.copy_to_host().T)
        top_id = np.ascontiguousarray(top_id_d.copy_to_host().T)
        return {"counts": counts_d.copy_to_host(), "top": top, "top_id": top_id, "max": out_max}
