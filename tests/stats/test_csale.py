"""C-SALE against slow references: base rate, sampling, streaming cluster-FWE null."""

import numpy as np
import pytest
from scipy import stats

from csale_app.io.experiments import Experiments
from csale_app.kernels.cpu import ale as cpu
from csale_app.kernels import rng as crng
from csale_app.kernels.gaussian import ale_kernel
from csale_app.kernels.engine import CPUBackend, build_null_plan, plan_args
from csale_app.kernels.cpu.csale import cluster_null_sizes, merge_top
from csale_app.kernels.plan import build_grid, build_kernel_table, pool_sampler, weighted_sampler
from csale_app.stats.csale import base_rate_map, observed_log, top_k_size

from tests import naive

SHAPE = (12, 13, 14)


@pytest.fixture
def mask():
    i, j, k = np.indices(SHAPE)
    return ((i - 6) ** 2 / 25 + (j - 6) ** 2 / 30 + (k - 7) ** 2 / 36) < 1


def _exps(ijk, counts, sizes):
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    n = len(counts)
    return Experiments(
        [f"e{i}" for i in range(n)],
        [f"e{i}" for i in range(n)],
        [""] * n,
        np.asarray(sizes, float),
        starts,
        np.asarray(ijk, np.int32),
        np.zeros((len(ijk), 3)),
        None,
        None,
    )


def test_base_rate_is_normalised_kernel_sum(mask, rng):
    grid = build_grid(mask)
    vox = np.argwhere(mask)
    ijk = vox[rng.integers(0, len(vox), 9)]
    db = _exps(ijk, [4, 5], [10, 25])
    rate = base_rate_map(db, grid, None, 8.0)
    from csale_app.kernels.gaussian import fwhm_from_sample_size

    dense = np.zeros(SHAPE)
    for f, (i, j, k) in enumerate(ijk):
        n = 10 if f < 4 else 25
        kern = ale_kernel(fwhm_from_sample_size(n), 8.0).astype(np.float32)
        dense += naive.place_kernel(SHAPE, (i, j, k), kern)
    expected = dense[mask] / dense[mask].sum()
    np.testing.assert_allclose(rate, expected, rtol=1e-6)
    assert rate.sum() == pytest.approx(1.0)


def test_sampled_foci_follow_the_base_rate(mask):
    gen = np.random.default_rng(1)
    grid = build_grid(mask)
    weights = gen.random(grid.n_mask) ** 3
    sampler = weighted_sampler(grid, weights)
    _, _, draw_index = crng.compile_rng(lambda f: f)
    u = crng.uniform_array(crng.seed_key(11), 0, np.arange(200000))
    idx = np.array([draw_index(x, sampler.cdf, len(sampler.cdf)) for x in u])
    observed = np.bincount(idx, minlength=len(sampler.cdf))
    expected = weights[weights > 0] / weights[weights > 0].sum() * len(u)
    # pool small cells so every expected count is >= 5
    order = np.argsort(expected)
    _, groups = np.unique(np.cumsum(expected[order]) // 50, return_inverse=True)
    obs_g = np.bincount(groups, weights=observed[order])
    exp_g = np.bincount(groups, weights=expected[order])
    chi2, pval = stats.chisquare(obs_g, exp_g)
    assert pval > 1e-3, (chi2, pval)


@pytest.mark.parametrize(
    "voxel_thresh,n_iters,pool", [(0.1, 40, False), (0.05, 61, False), (0.1, 50, True)]
)
def test_streaming_cluster_null_equals_quadratic_definition(mask, rng, voxel_thresh, n_iters, pool):
    """Counts and the cluster-FWE null from one pass (kept top-K values and permutations,
    merged across threads and chunks) equal the O(n^2) definition. ``pool``: foci drawn
    from 6 fixed voxels, so many permutations tie at a voxel."""
    grid = build_grid(mask)
    table, kid = build_kernel_table(np.array([8.0, 10.0, 9.0]), grid, 8.0)
    if pool:
        sampler = pool_sampler(grid, grid.mask_ijk[rng.choice(grid.n_mask, 6, replace=False)])
    else:
        sampler = weighted_sampler(grid, rng.random(grid.n_mask) ** 2)
    plan = build_null_plan(grid, table, kid, np.array([3, 2, 4]), sampler, seed=4)
    null_log = cpu.null_log_maps(0, n_iters, *plan_args(plan))
    obs = (1 - np.exp(null_log[:5].astype(np.float64).sum(axis=0) / 5)).astype(np.float32)
    K = top_k_size(voxel_thresh, n_iters)
    backend = CPUBackend(2)
    parts = [
        backend.csale_pass1_chunk(plan, a, b, observed_log(obs), K)
        for a, b in ((0, 17), (17, n_iters - 17))
    ]
    top, top_id = merge_top([p["top"] for p in parts], [p["top_id"] for p in parts], K)
    np.testing.assert_array_equal(top, np.sort(null_log.T, axis=1)[:, :K])
    counts = parts[0]["counts"] + parts[1]["counts"]
    np.testing.assert_array_equal(
        np.clip(counts / n_iters, 1 / n_iters, 1 - 1 / n_iters),
        naive.exceedance_p(null_log, observed_log(obs)),
    )
    sizes = cluster_null_sizes(
        top, top_id, voxel_thresh * (n_iters - 1), n_iters, grid.forward_neighbours, 2
    )
    expected = naive.csale_cluster_null(null_log, voxel_thresh, mask, grid.mask_ijk)
    assert expected.max() > 0
    np.testing.assert_array_equal(sizes, expected)
