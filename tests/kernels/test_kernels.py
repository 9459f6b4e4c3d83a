"""Every fast kernel against the slow references in tests/naive.py, on small unequal grids."""

import numpy as np
import pytest

from csale_app.kernels import rng
from csale_app.kernels.gaussian import ale_kernel
from csale_app.kernels.engine import CPUBackend, build_null_plan, log_threshold
from csale_app.kernels.plan import build_grid, build_kernel_table, uniform_sampler, weighted_sampler
from csale_app.kernels.cpu.ale import ma_csr

from tests import naive

SHAPE = (12, 13, 14)


@pytest.fixture
def rng_np():
    return np.random.default_rng(0)


@pytest.fixture
def mask():
    i, j, k = np.indices(SHAPE)
    return ((i - 6) ** 2 / 25 + (j - 6) ** 2 / 30 + (k - 7) ** 2 / 36) < 1


def _experiments(rng_np, mask, n_exp=4):
    vox = np.argwhere(mask)
    counts = rng_np.integers(1, 5, n_exp)
    foci = [vox[rng_np.integers(0, len(vox), c)] for c in counts]
    return foci, counts


def test_ma_csr_matches_dense_reference(rng_np, mask):
    grid = build_grid(mask)
    foci, counts = _experiments(rng_np, mask)
    fwhms = np.array([8.0, 10.0, 8.0, 12.0])
    table, kid = build_kernel_table(fwhms, grid, 8.0)
    ijk = np.concatenate(foci).astype(np.int32)
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    indptr, cols, vals = ma_csr(
        grid.padded_flat(ijk),
        starts,
        kid,
        table.start,
        table.flat_offsets,
        table.values,
        grid.gridmap,
        grid.n_mask,
    )
    for e in range(len(foci)):
        dense = naive.ma_map(SHAPE, foci[e], ale_kernel(fwhms[e], 8.0).astype(np.float32))
        got = np.zeros(grid.n_mask, dtype=np.float32)
        got[cols[indptr[e] : indptr[e + 1]]] = vals[indptr[e] : indptr[e + 1]]
        np.testing.assert_array_equal(got, dense[mask].astype(np.float32))


def test_rng_is_uniform_and_reproducible():
    key = rng.seed_key(123)
    u = rng.uniform_array(key, 7, np.arange(200000))
    assert u.min() >= 0 and u.max() < 1
    hist = np.histogram(u, bins=20, range=(0, 1))[0]
    assert np.all(np.abs(hist - 10000) < 5 * np.sqrt(10000))
    np.testing.assert_array_equal(u, rng.uniform_array(key, 7, np.arange(200000)))
    assert not np.array_equal(u[:100], rng.uniform_array(key, 8, np.arange(100)))
    assert not np.array_equal(u[:100], rng.uniform_array(rng.seed_key(124), 7, np.arange(100)))


def _naive_null(plan, perm, fwhms, mask, ale_thresh):
    """Replay permutation ``perm`` of ``plan`` densely: same foci, plain ALE and clusters."""
    s = plan.sampler
    _, _, draw_index = rng.compile_rng(lambda f: f)
    experiments = []
    for e in range(plan.n_experiments):
        first, last = plan.exp_focus_start[e], plan.exp_focus_start[e + 1]
        u = rng.uniform_array(plan.key, perm, np.arange(first, last))
        idx = [draw_index(x, s.cdf, len(s.padded_flat)) for x in u]
        experiments.append(s.ijk[idx])
    kernels = [ale_kernel(f, 8.0).astype(np.float32) for f in fwhms]
    ale = naive.ale_map(mask.shape, experiments, kernels)
    size, mass = naive.cluster_max(ale, mask, ale_thresh)
    return ale[mask].max(), size, mass


@pytest.mark.parametrize("weighted", [False, True])
def test_permutation_pass_matches_dense_reference(rng_np, mask, weighted):
    grid = build_grid(mask)
    fwhms = np.array([8.0, 10.0, 8.0, 12.0, 9.0])
    table, kid = build_kernel_table(fwhms, grid, 8.0)
    counts = np.array([3, 1, 4, 2, 5])
    sampler = (
        weighted_sampler(grid, rng_np.random(grid.n_mask) ** 4)
        if weighted
        else uniform_sampler(grid)
    )
    plan = build_null_plan(grid, table, kid, counts, sampler, seed=5)
    thresh = 0.02
    out = CPUBackend(1).fwe_chunk(plan, 0, 6, thresh)
    for perm in range(6):
        mx, size, mass = _naive_null(plan, perm, fwhms, mask, thresh)
        # float32 log-space accumulation: ~1e-6 relative, far below the parity tolerances
        assert out["max"][perm] == pytest.approx(mx, rel=1e-5)
        assert out["size"][perm] == size
        assert out["mass"][perm] == pytest.approx(mass, rel=1e-4, abs=1e-7)


def test_results_do_not_depend_on_threads_or_chunks(rng_np, mask):
    grid = build_grid(mask)
    table, kid = build_kernel_table(np.array([8.0, 10.0]), grid, 8.0)
    plan = build_null_plan(grid, table, kid, np.array([3, 4]), uniform_sampler(grid), seed=9)
    one = CPUBackend(1).fwe_chunk(plan, 0, 10, 0.01)
    two = CPUBackend(2).fwe_chunk(plan, 0, 10, 0.01)
    split = [CPUBackend(2).fwe_chunk(plan, s, 5, 0.01) for s in (0, 5)]
    for k in one:
        np.testing.assert_array_equal(one[k], two[k])
        np.testing.assert_array_equal(one[k], np.concatenate([p[k] for p in split]))


def test_log_threshold_orders_like_ale():
    t = 0.0123
    lt = log_threshold(t)
    assert 1 - np.exp(np.float64(lt) - 1e-6) > t > 1 - np.exp(np.float64(lt) + 1e-6)


def _replay_bit_exactly(mask, fwhms, counts, seed, n_perm=8):
    """The engine's accumulator against a float32 dense replay that takes each experiment's
    voxelwise minimum of log(1 - k) and adds experiments in order; returns how many foci
    stood alone and how many shared their box with another focus of their experiment."""
    from csale_app.kernels.cpu import ale as cpu
    from csale_app.kernels.engine import plan_args

    shape = mask.shape
    grid = build_grid(mask)
    table, kid = build_kernel_table(np.asarray(fwhms, dtype=float), grid, 8.0)
    plan = build_null_plan(grid, table, kid, np.asarray(counts), uniform_sampler(grid), seed=seed)
    got = cpu.null_log_maps(0, n_perm, *plan_args(plan))
    _, _, draw_index = rng.compile_rng(lambda f: f)
    s = plan.sampler
    n_isolated = n_overlap = 0
    for perm in range(n_perm):
        acc = np.zeros(shape, dtype=np.float32)
        for e in range(plan.n_experiments):
            first, last = plan.exp_focus_start[e], plan.exp_focus_start[e + 1]
            u = rng.uniform_array(plan.key, perm, np.arange(first, last))
            ijk = s.ijk[[draw_index(x, s.cdf, len(s.padded_flat)) for x in u]]
            w = int(table.width[kid[e]])
            cube = table.cube_log[table.cube_start[kid[e]] :][: w**3].reshape(w, w, w)
            emin = np.zeros(shape, dtype=np.float32)
            for f in ijk:
                box = naive.place_kernel(shape, f, cube).astype(np.float32)
                emin = np.minimum(emin, box)
            near = np.abs(ijk[:, None, :] - ijk[None, :, :]).max(axis=2) < w
            n_near = near.sum(axis=1) - 1
            n_isolated += int((n_near == 0).sum())
            n_overlap += int((n_near > 0).sum())
            acc += emin
        np.testing.assert_array_equal(got[perm], acc[mask])
    return n_isolated, n_overlap


def test_overlapping_and_isolated_foci_sum_bit_exactly():
    """Long thin grid: some random foci share kernel boxes (shared rows take the minimum),
    others stand alone (direct add)."""
    n_isolated, n_overlap = _replay_bit_exactly(
        np.ones((90, 11, 10), dtype=bool), [6.0, 8.0, 6.0, 7.0], [6, 5, 7, 4], seed=11
    )
    assert n_isolated and n_overlap


def test_partly_shared_rows_of_crowded_foci_sum_bit_exactly(mask):
    """Crowded foci in a small ellipsoid (rows clipped to the mask at both ends): most boxes
    overlap several others with every offset, so each box has shared rows (scratch minimum,
    flush) beside rows only it covers (direct add), and rows shared by three or more foci."""
    n_isolated, n_overlap = _replay_bit_exactly(mask, [5.0, 9.0, 7.0], [9, 3, 12], seed=3, n_perm=5)
    assert n_overlap > 5 * n_isolated


@pytest.mark.parametrize("float64_log", [False, True])
def test_chunked_log_sums_equal_bincount_bit_for_bit(rng, monkeypatch, float64_log):
    """The bounded-memory log-sum (large MACMs) gives np.bincount's sums exactly."""
    from csale_app.stats import ale

    monkeypatch.setattr(ale, "LOG_SUM_CHUNK", 97)  # many chunks, ragged last one
    n_mask = 501
    cols = rng.integers(0, n_mask, 5000).astype(np.int32)
    vals = rng.uniform(0, 0.3, 5000).astype(np.float32)
    w = np.log1p(-vals.astype(np.float64)) if float64_log else np.log1p(-vals)
    ref = np.bincount(cols, weights=w, minlength=n_mask)
    got = ale.log_sums(cols, vals, n_mask, float64_log=float64_log)
    assert got.dtype == np.float64 and np.array_equal(got, ref)


def test_pass_skeleton_is_cacheable_across_processes():
    """compile_pass binds the reduction as globals: a closure over dispatchers would give
    numba a cache key with per-process ids and recompile both passes in every run."""
    from csale_app.kernels.cpu import ale, csale

    passes = (ale._fwe_pass, csale._pass1)
    for p in passes:
        assert p.py_func.__closure__ is None
        assert p.py_func.__code__ is ale._pass_body.__code__  # one copy of the loop
    assert len({p.py_func.__qualname__ for p in passes}) == 2  # one cache file each
    assert passes[0].py_func.__globals__["_reduce"] is ale._fwe_reduce
    assert passes[1].py_func.__globals__["_reduce"] is csale._pass1_reduce
