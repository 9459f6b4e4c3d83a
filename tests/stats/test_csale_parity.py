"""C-SALE against NiMARE's SCALE (deterministic null) and calibration of its cluster FWE.

Parity criterion (2,000 permutations each, independent random streams): voxel p maps agree
within Monte Carlo error. For every voxel with observed ALE > 0 we take the binomial
standard error of the difference of two independent estimates, se = sqrt(2 p (1 - p) / n),
and require |p_ours - p_nimare| <= 4 se + 2 / n for at least 99.5% of voxels, and a
Pearson correlation of the -log10 p maps above 0.98.
"""

import warnings

import nibabel as nib
import numpy as np
import pytest

from csale_app.io.experiments import Experiments, restrict_to_mask
from csale_app.io.roi import sphere_roi
from csale_app.kernels.engine import CPUBackend
from csale_app.kernels.plan import build_grid, weighted_sampler
from csale_app.stats.csale import CSALEParams, base_rate_map, run_csale
from csale_app.stats.montecarlo import NullRun

N = 2000


@pytest.fixture(scope="module")
def roi_setup(pain_experiments, brain):
    img, mask = brain
    roi = sphere_roi([(38.0, 4.0, 2.0), (2.0, 4.0, 52.0)], 24.0, img, mask)
    exps = restrict_to_mask(pain_experiments, roi.mask)
    return img, roi.mask, exps


def test_deterministic_csale_matches_nimare_scale(roi_setup, pain_experiments):
    from nimare.dataset import Dataset
    from nimare.meta.cbma.ale import SCALE

    img, mask, exps = roi_setup
    assert exps.n_experiments >= 10
    grid = build_grid(mask)
    ours = run_csale(
        exps,
        pain_experiments,
        grid,
        img.affine,
        None,
        CSALEParams(
            N,
            voxel_thresh=0.001,
            cluster_alpha=0.05,
            min_cluster_size=10,
            seed=11,
            null_kind="deterministic",
        ),
        NullRun(CPUBackend(2)),
    )
    # the same experiments, foci and pool for NiMARE
    data = {}
    for e in range(exps.n_experiments):
        xyz = exps.xyz_mni[exps.focus_start[e] : exps.focus_start[e + 1]]
        data[f"s{e}"] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": "MNI",
                        "x": xyz[:, 0].tolist(),
                        "y": xyz[:, 1].tolist(),
                        "z": xyz[:, 2].tolist(),
                    },
                    "metadata": {"sample_sizes": [float(exps.sample_size[e])]},
                }
            }
        }
    pool_ijk = pain_experiments.ijk[mask[tuple(pain_experiments.ijk.T)]]
    pool_xyz = pool_ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(data, mask=mask_img)
        res = SCALE(xyz=pool_xyz, n_iters=N, mask=mask_img, random_state=5, n_cores=2).fit(dset)
    stat_ref = res.get_map("stat", return_type="array")
    np.testing.assert_allclose(ours.stat, stat_ref, atol=1e-6)
    p_ref = 10 ** -res.get_map("logp", return_type="array").astype(np.float64)
    sel = ours.stat > 0
    p = np.clip(ours.p[sel], 1 / N, 1)
    q = p_ref[sel]
    pm = (p + q) / 2
    se = np.sqrt(2 * pm * (1 - pm) / N)
    ok = np.abs(p - q) <= 4 * se + 2 / N
    assert ok.mean() >= 0.995, ok.mean()
    assert np.corrcoef(-np.log10(p), -np.log10(q))[0, 1] > 0.98


def test_cluster_fwe_false_positive_rate_is_alpha(roi_setup, pain_experiments):
    """Studysets simulated from the base-rate map itself: the share of simulations with any
    significant cluster (cluster-FWE p < 0.05) estimates the FWER. 120 simulations, 200
    permutations each, voxel threshold 0.01: the exact binomial 99% interval for 0.05 at
    n = 120 is about [0.01, 0.11]; we require the FWER to lie in [0.0, 0.12] and the
    uncorrected false-positive rate to be near the voxel threshold."""
    img, mask, _ = roi_setup
    grid = build_grid(mask)
    rate = base_rate_map(pain_experiments, grid, None, 8.0)
    sampler = weighted_sampler(grid, rate)
    gen = np.random.default_rng(2026)
    n_sims, n_exp, hits, voxel_fp = 120, 14, 0, []
    backend = CPUBackend(2)
    for sim in range(n_sims):
        counts = gen.integers(2, 6, n_exp)
        u = gen.random(counts.sum())
        idx = np.searchsorted(sampler.cdf, u, side="right")
        ijk = sampler.ijk[np.minimum(idx, len(sampler.cdf) - 1)]
        starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
        sizes = gen.integers(10, 30, n_exp).astype(float)
        exps = Experiments(
            [f"e{i}" for i in range(n_exp)],
            [f"e{i}" for i in range(n_exp)],
            [""] * n_exp,
            sizes,
            starts,
            ijk.astype(np.int32),
            np.zeros((len(ijk), 3)),
            None,
            None,
        )
        res = run_csale(
            exps,
            pain_experiments,
            grid,
            img.affine,
            None,
            CSALEParams(
                200, voxel_thresh=0.01, cluster_alpha=0.05, min_cluster_size=10, seed=1000 + sim
            ),
            NullRun(backend, chunk_size=200),
        )
        hits += int(len(res.clusters) > 0)
        voxel_fp.append(float(np.mean(res.p < 0.01)))
    fwer = hits / n_sims
    assert 0.0 <= fwer <= 0.12, fwer
    assert 0.002 <= np.mean(voxel_fp) <= 0.03, np.mean(voxel_fp)
