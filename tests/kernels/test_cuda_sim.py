"""The CUDA backend against the CPU engine, on numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM`` must be set before ``numba.cuda`` is first imported, so the device
side runs once in a subprocess (module-scoped fixture) that writes its results to an .npz;
the comparisons run here. Problems are tiny: the simulator runs every GPU thread as a Python
thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csale_app.errors import DeviceError
from csale_app.kernels import rng
from csale_app.kernels.backend_spec import BackendSpec
from csale_app.kernels.cpu.csale import cluster_null_sizes
from csale_app.kernels.engine import CPUBackend, build_null_plan
from csale_app.kernels.plan import (
    build_grid,
    build_kernel_table,
    pool_sampler,
    uniform_sampler,
    weighted_sampler,
)

REPO = Path(__file__).resolve().parents[2]
SHAPE = (12, 13, 14)
FWHMS = np.array([12.0, 14.0, 12.0, 14.0])
COUNTS = np.array([3, 2, 4, 3])
THRESH = 0.009

# (scenario, start, count, batch size, supra-list cap or None) run on the simulated device
RUNS = [
    ("uniform", 0, 5, 1, None),
    ("uniform", 0, 5, 3, None),
    ("weighted", 7, 5, 3, 30),  # cap 30: 3 of 5 permutations overflow -> host fallback
    ("pool", 3, 4, "auto", None),
]

# C-SALE pass on the simulated device: (scenario, start, count, batch size)
CSALE_K = 3  # top size < count, so insertions shift values and ids (also K_WIDE > count)
CSALE_K_WIDE = 8
CSALE_RUNS = [
    ("uniform", 2, 4, 2),
    ("uniform", 2, 4, 4),
    ("weighted", 4, 4, 2),
    ("weighted", 4, 4, 3),
    ("pool", 1, 5, 2),
]


def csale_ks(run):
    """Pass-1 top sizes of a C-SALE run (the wide one, with zero padding, in run 0 only)."""
    return (CSALE_K, CSALE_K_WIDE) if run == 0 else (CSALE_K,)


def scenarios():
    """name -> NullPlan: uniform, weighted (base-rate-like) and pool (foci outside the mask)."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[3:8, 3:9, 4:11] = True  # 5 x 6 x 7 box, not aligned with the 2x2x4 simulator tiles
    mask[5, 5, 4] = False  # and a hole
    grid = build_grid(mask)
    table, kid = build_kernel_table(FWHMS, grid, 8.0)
    gen = np.random.default_rng(3)
    weights = gen.random(grid.n_mask) ** 4
    weights[gen.random(grid.n_mask) < 0.3] = 0.0
    pool = np.argwhere(np.ones(SHAPE, dtype=bool))[gen.integers(0, np.prod(SHAPE), 40)]
    samplers = {
        "uniform": uniform_sampler(grid),
        "weighted": weighted_sampler(grid, weights),
        "pool": pool_sampler(grid, pool),
    }
    return {
        name: build_null_plan(grid, table, kid, COUNTS, s, seed=11 + i)
        for i, (name, s) in enumerate(samplers.items())
    }


def csale_inputs(plan):
    """obs_log for the C-SALE pass tests, from the CPU engine: an "observed" map between
    null maps (so exceedance counts vary)."""
    smallest = CPUBackend(1).csale_pass1_chunk(
        plan, 200, 10, np.zeros(plan.grid.n_mask, np.float32), 10
    )
    return np.ascontiguousarray(smallest["top"][:, 6])  # 7th smallest of 10 null values


#: Prepended to every script run on the simulated device (also by test_cuda_e2e.py).
SIM_PREAMBLE = r"""
import sys
import numpy as np
from numba import cuda

# numba's simulator allocates each shared array on first use with an unlocked get-then-set,
# so two simulated threads can get different arrays for one __shared__ declaration (a race
# that real GPUs do not have). Same logic, under a lock.
import threading, traceback
from numba.cuda.simulator import kernelapi
_shared_lock = threading.Lock()
def _locked_shared_array(self, shape, dtype):
    from numba.core import types
    from numba.np import numpy_support
    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    caller = traceback.extract_stack(sys._getframe())[-2][0:2]
    with _shared_lock:
        res = self._allocations.get(caller)
        if res is None:
            res = np.empty(shape, dtype)
            self._allocations[caller] = res
    return res
kernelapi.FakeCUDAShared.array = _locked_shared_array

# The simulator starts a new Python thread per simulated GPU thread and busy-polls them to
# emulate syncthreads(); thread start-up dominates its run time. Same semantics with a
# persistent pool of worker threads and a threading.Barrier per block (a thread that fails
# breaks the barrier, so the others stop too, and the first error is raised).
from numba.cuda.simulator import kernel as _simkernel
class _PoolThread(_simkernel.BlockThread):
    def __init__(self):
        threading.Thread.__init__(self, daemon=True)
        self.go = threading.Semaphore(0)
        self.job = None
        self.debug = False
        self.abort = False
        self.exception = None
        self.syncthreads_blocked = False
        self.syncthreads_event = threading.Event()
    def run(self):
        while True:
            self.go.acquire()
            f, args, barrier, done = self.job
            try:
                f(*args)
            except BaseException as e:
                msg = f"tid={list(self.threadIdx)} ctaid={list(self.blockIdx)}: {e}"
                try:
                    err = type(e)(msg)
                except Exception:
                    err = e
                self.exception = (err, e.__traceback__)
                barrier.abort()
            done.release()
    def syncthreads(self):
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads call")
        self._barrier.wait(timeout=300)
_pool = []
def _pooled_block_run(self, grid_point, *args):
    points = list(np.ndindex(*self._block_dim))
    n = len(points)
    while len(_pool) < n:
        t = _PoolThread()
        t.start()
        _pool.append(t)
    barrier = threading.Barrier(n)
    done = threading.Semaphore(0)
    bdim = _simkernel.Dim3(*self._block_dim)
    workers = _pool[:n]
    for t, point in zip(workers, points):
        t.blockIdx = _simkernel.Dim3(*grid_point)
        t.threadIdx = _simkernel.Dim3(*point)
        t.thread_id = point[0] + bdim.x * (point[1] + bdim.y * point[2])
        t._manager = self
        t._barrier = barrier
        t.abort = False
        t.exception = None
        t.job = (self._f, args, barrier, done)
    for t in workers:
        t.go.release()
    for _ in range(n):
        done.acquire()
    failed = [t for t in workers if t.exception]
    first = [t for t in failed
             if not isinstance(t.exception[0], threading.BrokenBarrierError)] or failed
    if first:
        raise first[0].exception[0].with_traceback(first[0].exception[1])
_simkernel.BlockManager.run = _pooled_block_run
"""

_DEVICE_SCRIPT = (
    SIM_PREAMBLE
    + r"""
import json, os, time
from tests.kernels.test_cuda_sim import CSALE_RUNS, RUNS, THRESH, csale_inputs, csale_ks, scenarios
from csale_app.errors import DeviceError
from csale_app.kernels.backend_spec import BackendSpec
from csale_app.kernels.cuda.backend import CUDABackend
from csale_app.kernels.device import make_backend

out = {}
plans = scenarios()
t0 = time.time()
for name, plan in plans.items():
    out[f"foci_{name}"] = CUDABackend(BackendSpec("cuda", batch_size=2)).draw_foci(plan, 2, 3)
for i, (name, start, count, batch, cap) in enumerate(RUNS):
    spec = BackendSpec("cuda", batch_size=None if batch == "auto" else batch)
    be = CUDABackend(spec) if cap is None else CUDABackend(spec, supra_cap=cap)
    res = be.fwe_chunk(plans[name], start, count, THRESH)
    for key, val in res.items():
        out[f"run{i}_{key}"] = val
    out[f"run{i}_batch"] = np.array(be.last_batch_size)
t1 = time.time()
for i, (name, start, count, batch) in enumerate(CSALE_RUNS):
    plan = plans[name]
    obs_log = csale_inputs(plan)
    be = CUDABackend(BackendSpec("cuda", batch_size=batch))
    for K in csale_ks(i):
        res = be.csale_pass1_chunk(plan, start, count, obs_log, K)
        for key, val in res.items():
            out[f"csale{i}_p1k{K}_{key}"] = val
    out[f"csale{i}_batch"] = np.array(be.last_batch_size)
info = {"seconds": time.time() - t0, "csale_seconds": time.time() - t1}
os.environ["CSALE_ALLOW_CUDASIM"] = "1"
b = make_backend(BackendSpec("auto"))
info["auto_allowed"] = b.name
info["describe"] = b.describe()
b = make_backend(BackendSpec("cuda", batch_size=4, mem_gb=0.5))
info["cuda_allowed"] = b.name
info["cuda_describe"] = b.describe()
info["cuda_mem_limit"] = b.mem_limit_bytes
info["cuda_fallback"] = b.fallback_reason
del os.environ["CSALE_ALLOW_CUDASIM"]
info["auto_not_allowed"] = make_backend(BackendSpec("auto")).name
try:
    make_backend(BackendSpec("cuda"))
    info["cuda_not_allowed"] = "no error"
except DeviceError as exc:
    info["cuda_not_allowed"] = exc.one_line()
out["info"] = np.array(json.dumps(info))
np.savez(sys.argv[1], **out)
"""
)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    path = tmp_path_factory.mktemp("cudasim") / "device.npz"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(REPO)}
    env.pop("CSALE_ALLOW_CUDASIM", None)
    proc = subprocess.run(
        [sys.executable, "-c", _DEVICE_SCRIPT, str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(path) as data:
        res = {k: data[k] for k in data.files}
    res["info"] = json.loads(str(res["info"]))
    return res


def _reference_foci(plan, start, count):
    """Numpy replay of the counter-based draws: (count, n_foci, 3) template ijk."""
    _, _, draw_index = rng.compile_rng(lambda f: f)
    s = plan.sampler
    out = np.empty((count, plan.n_foci, 3), dtype=np.int32)
    for p in range(count):
        u = rng.uniform_array(plan.key, start + p, np.arange(plan.n_foci))
        idx = [draw_index(x, s.cdf, len(s.padded_flat)) for x in u]
        out[p] = s.ijk[idx]
    return out


@pytest.mark.parametrize("name", ["uniform", "weighted", "pool"])
def test_device_draws_the_same_foci(device, name):
    plan = scenarios()[name]
    np.testing.assert_array_equal(device[f"foci_{name}"], _reference_foci(plan, 2, 3))


@pytest.mark.parametrize("run", range(len(RUNS)))
def test_fwe_chunk_matches_cpu(device, run):
    name, start, count, batch, _cap = RUNS[run]
    cpu = CPUBackend(1).fwe_chunk(scenarios()[name], start, count, THRESH)
    assert cpu["size"].max() > 0, "scenario has no supra-threshold clusters"
    got = {k: device[f"run{run}_{k}"] for k in ("max", "size", "mass")}
    np.testing.assert_allclose(got["max"], cpu["max"], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(got["size"], cpu["size"])
    np.testing.assert_allclose(got["mass"], cpu["mass"], rtol=1e-5, atol=1e-12)
    # by construction the device replays the CPU's float32 operations: bit-identical
    for k in got:
        np.testing.assert_array_equal(got[k], cpu[k])


def test_results_do_not_depend_on_batch_size(device):
    assert int(device["run0_batch"]) == 1 and int(device["run1_batch"]) == 3
    for k in ("max", "size", "mass"):
        np.testing.assert_array_equal(device[f"run0_{k}"], device[f"run1_{k}"])


@pytest.mark.parametrize("run", range(len(CSALE_RUNS)))
def test_csale_pass_matches_cpu(device, run):
    name, start, count, batch = CSALE_RUNS[run]
    plan = scenarios()[name]
    obs_log = csale_inputs(plan)
    assert int(device[f"csale{run}_batch"]) == batch
    for K in csale_ks(run):
        cpu = CPUBackend(1).csale_pass1_chunk(plan, start, count, obs_log, K)
        assert 0 < cpu["counts"].sum() < count * plan.grid.n_mask
        assert (cpu["top"] < 0).any()
        if K > count:
            assert (cpu["top"][:, count:] == 0).all()  # padding
            assert (cpu["top_id"][:, count:] == -1).all()
        else:
            assert set(np.unique(cpu["top_id"])) <= set(range(start, start + count)) | {-1}
        for key in ("counts", "top", "top_id", "max"):
            got = device[f"csale{run}_p1k{K}_{key}"]
            assert got.dtype == cpu[key].dtype and got.shape == cpu[key].shape, key
            np.testing.assert_array_equal(got, cpu[key])
        # the cluster-FWE null read off the kept lists is then the CPU's too
        limit = 1.5
        sizes = [
            cluster_null_sizes(
                r["top"], r["top_id"] - start, limit, count, plan.grid.forward_neighbours, 1
            )
            for r in (cpu, {k: device[f"csale{run}_p1k{K}_{k}"] for k in ("top", "top_id")})
        ]
        np.testing.assert_array_equal(sizes[0], sizes[1])


def test_csale_results_do_not_depend_on_batch_size(device):
    for a, b in ((0, 1), (2, 3)):
        for key in ("counts", "top", "top_id", "max"):
            np.testing.assert_array_equal(
                device[f"csale{a}_p1k{CSALE_K}_{key}"], device[f"csale{b}_p1k{CSALE_K}_{key}"]
            )


def test_simulated_device_is_selected_only_when_allowed(device):
    info = device["info"]
    assert info["auto_allowed"] == "cuda" and info["cuda_allowed"] == "cuda"
    assert info["describe"].startswith("CUDA GPU 0") and info["describe"].endswith("batch auto)")
    # the spec is the backend's whole configuration: batch size and memory cap included
    assert info["cuda_describe"].endswith("batch 4)") and info["cuda_fallback"] is None
    assert info["cuda_mem_limit"] == 0.5 * 2**30
    assert info["auto_not_allowed"] == "cpu"
    assert info["cuda_not_allowed"].startswith("--device cuda: no usable NVIDIA GPU (")
    assert "CSALE_ALLOW_CUDASIM" in info["cuda_not_allowed"]


def test_cuda_without_gpu_is_a_device_error(monkeypatch):
    from numba import cuda

    from csale_app.kernels.device import describe_device, make_backend

    monkeypatch.delenv("CSALE_ALLOW_CUDASIM", raising=False)
    if cuda.is_available() and not os.environ.get("NUMBA_ENABLE_CUDASIM"):
        pytest.skip("a real GPU is present")
    with pytest.raises(DeviceError) as err:
        make_backend(BackendSpec("cuda"))
    msg = err.value.one_line()
    assert msg.startswith("--device cuda: no usable NVIDIA GPU (")
    assert msg.endswith("; use --device cpu or auto") and "\n" not in str(err.value)
    assert err.value.exit_code == 1
    auto = make_backend(BackendSpec("auto"))
    assert auto.name == "cpu" and auto.fallback_reason.startswith("no usable NVIDIA GPU")
    cpu = make_backend(BackendSpec("cpu", gpu_id=3, batch_size=8))
    assert cpu.name == "cpu" and cpu.fallback_reason is None
    assert describe_device().startswith("no usable NVIDIA GPU (")
    with pytest.raises(DeviceError):
        make_backend(BackendSpec("tpu"))


def test_tiles_partition_the_mask():
    from csale_app.kernels.cuda.host import TILE_SHAPES, build_tiles

    grid = next(iter(scenarios().values())).grid
    for tpb in (16, 128):
        vox, box = build_tiles(grid.mask_ijk, tpb)
        used = vox[vox >= 0]
        np.testing.assert_array_equal(np.sort(used), np.arange(grid.n_mask))
        for t in range(vox.shape[0]):
            ijk = grid.mask_ijk[vox[t][vox[t] >= 0]]
            np.testing.assert_array_equal(box[t, :3], ijk.min(axis=0))
            np.testing.assert_array_equal(box[t, 3:], ijk.max(axis=0))
            assert np.all(box[t, 3:] - box[t, :3] < np.array(TILE_SHAPES[tpb]))


def test_dense_log_boxes_hold_the_kernel_table():
    from csale_app.kernels.gaussian import KERNEL_HALF
    from csale_app.kernels.cuda.host import _offsets_ijk, dense_log_boxes

    plan = scenarios()["uniform"]
    k, ps = plan.kernels, plan.grid.padded_shape
    d = _offsets_ijk(k.flat_offsets, ps)
    np.testing.assert_array_equal((d[:, 0] * ps[1] + d[:, 1]) * ps[2] + d[:, 2], k.flat_offsets)
    boxes, half = dense_log_boxes(plan)
    np.testing.assert_array_equal(half, (k.width - 1) // 2)
    for kid in range(len(k.fwhms)):
        a, b = k.start[kid], k.start[kid + 1]
        got = boxes[kid][tuple((d[a:b] + KERNEL_HALF).T)]
        np.testing.assert_array_equal(got, k.log_values[a:b])
        assert np.count_nonzero(boxes[kid] <= 0) == b - a  # the rest is the 1.0 sentinel
