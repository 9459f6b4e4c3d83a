"""Neurosynth's MKDA chi-square statistics (csale_app.stats.mkdachi2) against oracles.

The oracles re-implement, from their definitions, neurosynth/neurosynth's
``analysis/stats.py`` (``one_way``, ``two_way`` cell by cell, ``fdr``) and the arithmetic of
``analysis/meta.py`` ``MetaAnalysis`` (probabilities, ``p_to_z``, FDR-thresholded z maps,
``min_studies=1``). The sphere counts are checked against binary maps built naively.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from scipy.stats import norm

from csale_app.errors import EmptySelectionError
from csale_app.kernels.spheres import active_counts, covered_voxels, sphere_offsets
from csale_app.stats.mkdachi2 import fdr_threshold, mkdachi2, one_way_chi2, two_way_chi2


# ---- Neurosynth, from its definitions -----------------------------------------------------
def ns_one_way(data, n):
    term = data.astype("float64")
    no_term = n - term
    t_exp = np.mean(term, 0)
    t_exp = np.array([t_exp] * data.shape[0])
    nt_exp = n - t_exp
    chi2 = (term - t_exp) ** 2 / t_exp + (no_term - nt_exp) ** 2 / nt_exp
    return special.chdtrc(1, chi2)


def ns_two_way(cells):
    cells = cells.astype("float64")
    total = np.apply_over_axes(np.sum, cells, [1, 2]).ravel()
    chi_sq = np.zeros(cells.shape, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(2):
            for j in range(2):
                exp = cells[:, i, :].sum(1) * cells[:, :, j].sum(1) / total
                chi_sq[:, i, j] = (cells[:, i, j] - exp) ** 2 / exp
                chi_sq[exp == 0, i, j] = 1.0
    return special.chdtrc(1, chi_sq.sum(axis=(1, 2)))


def ns_fdr(p, q=0.05):
    s = np.sort(p)
    nvox = p.shape[0]
    null = np.array(range(1, nvox + 1), dtype="float") * q / nvox
    below = np.where(s <= null)[0]
    return s[max(below)] if len(below) else -1


def ns_p_to_z(p, sign):
    p = p / 2
    p[p < 1e-240] = 1e-240
    z = np.abs(norm.ppf(p)) * sign
    z[np.isinf(z)] = norm.ppf(1e-240) * -1
    return z


def ns_meta_analysis(a, b, n_sel, n_unsel, q=0.01, prior=0.5):
    """MetaAnalysis(dataset, ids, q, prior, min_studies=1).images, from its counts."""
    n = n_sel + n_unsel
    with np.errstate(divide="ignore", invalid="ignore"):
        pF = n_sel / n
        pA = (a + b) / n
        pAgF = a / n_sel
        pAgU = b / n_unsel
        pFgA = pAgF * pF / pA
        pA_prior = prior * pAgF + (1 - prior) * pAgU
        pFgA_prior = pAgF * prior / pA_prior
    images = {"pA": pA, "pAgF": pAgF, "pFgA": pFgA, "pA_prior": pA_prior, "pFgA_prior": pFgA_prior}
    p = ns_one_way(a.astype(float), n_sel)
    p[p < 1e-240] = 1e-240
    z = ns_p_to_z(p, np.sign(a - a.mean()))
    images["uniformity_z"] = z
    images["uniformity_z_FDR"] = z * (p <= ns_fdr(p, q))
    cells = np.array([[a, b], [n_sel - a, n_unsel - b]]).T.astype(float)
    p = ns_two_way(cells)
    p[p < 1e-240] = 1e-240
    z = ns_p_to_z(p, np.sign(pAgF - pAgU))
    images["association_z"] = z
    images["association_z_FDR"] = z * (p <= ns_fdr(p, q))
    out = {k: np.array(v, dtype=float) for k, v in images.items()}
    for v in out.values():
        v[pA < 1 / n] = 0
    return out


# ---- counts: random, with voxels active nowhere and everywhere --------------------------------
def random_counts(rng, n_vox=4000, n_sel=40, n_unsel=300):
    rate = rng.beta(0.6, 8, n_vox)
    boost = rng.random(n_vox) < 0.05
    a = rng.binomial(n_sel, np.clip(rate * np.where(boost, 6, 1), 0, 1))
    b = rng.binomial(n_unsel, rate)
    a[:20], b[:20] = 0, 0  # no study active
    a[20:25], b[20:25] = n_sel, n_unsel  # every study active
    return a, b, n_sel, n_unsel


MAP_OF = {
    "pA": "stat-prob_desc-A",
    "pAgF": "stat-prob_desc-AgF",
    "pFgA": "stat-prob_desc-FgA",
    "pA_prior": "stat-prob_desc-AgFprior",
    "pFgA_prior": "stat-prob_desc-FgAprior",
    "uniformity_z": "stat-z_desc-uniformity",
    "association_z": "stat-z_desc-association",
    "uniformity_z_FDR": "stat-z_desc-uniformity_level-voxel_corr-FDR",
    "association_z_FDR": "stat-z_desc-association_level-voxel_corr-FDR",
}


def test_chi2_and_p_match_neurosynth(rng):
    a, b, n_sel, n_unsel = random_counts(rng)
    p, _ = _p_of(one_way_chi2(a, n_sel))
    np.testing.assert_allclose(p, ns_one_way(a, n_sel), rtol=1e-9, atol=1e-300)
    cells = np.array([[a, b], [n_sel - a, n_unsel - b]]).T
    ns = ns_two_way(cells)
    ours, _ = _p_of(two_way_chi2(a, b, n_sel, n_unsel))
    regular = ((a + b) > 0) & ((a + b) < n_sel + n_unsel)
    np.testing.assert_allclose(ours[regular], ns[regular], rtol=1e-9, atol=1e-300)
    # degenerate tables (nobody or everybody active): Neurosynth's "invalid voxel" rule gives
    # chi2 = 2 although its comment intends p = 1; ours is chi2 = 0, p = 1
    assert np.allclose(ns[~regular], special.chdtrc(1, 2.0))
    assert np.all(ours[~regular] == 1.0)


def _p_of(chi2):
    from csale_app.stats.mkdachi2 import chi2_p

    return chi2_p(chi2)


def test_z_is_neurosynths_p_to_z_and_logp_does_not_underflow():
    chi2 = np.array([0.0, 1e-6, 0.5, 3.84, 10.8, 200.0, 1000.0, 1e5])
    from csale_app.stats.mkdachi2 import chi2_p

    p, logp = chi2_p(chi2)
    z = np.sqrt(chi2)
    ok = p / 2 > 1e-240
    np.testing.assert_allclose(z[ok], ns_p_to_z(p[ok].copy(), np.ones(ok.sum())), rtol=1e-7)
    np.testing.assert_allclose(logp[p > 0], -np.log10(p[p > 0]), rtol=1e-10, atol=1e-12)
    assert np.isfinite(logp).all() and logp[-1] > 2e4  # p itself underflows to 0 there
    assert p[0] == 1.0 and logp[0] == 0.0


@pytest.mark.parametrize("q", [0.01, 0.05])
def test_fdr_threshold_is_neurosynths(rng, q):
    for _ in range(20):
        p = np.concatenate([rng.uniform(0, 1, 500), rng.uniform(0, 1e-3, rng.integers(0, 40))])
        assert fdr_threshold(p, q) == ns_fdr(p, q)
    assert fdr_threshold(np.array([0.5, 0.9]), q) == -1.0


def test_maps_match_neurosynth_meta_analysis(rng):
    a, b, n_sel, n_unsel = random_counts(rng)
    res = mkdachi2(a, b, n_sel, n_unsel, prior=0.5, q=0.01)
    ref = ns_meta_analysis(a, b, n_sel, n_unsel, q=0.01)
    regular = ((a + b) > 0) & ((a + b) < n_sel + n_unsel)
    for ns_name, ours in MAP_OF.items():
        got = res.maps[ours]
        np.testing.assert_allclose(
            got[regular], ref[ns_name][regular], rtol=1e-7, atol=1e-12, err_msg=ours
        )
        # where no study is active every map is 0 (Neurosynth's min_studies=1)
        assert np.all(got[(a + b) == 0] == 0), ours
    assert np.all(res.maps["stat-p_desc-uniformity"][(a + b) == 0] == 1.0)
    assert res.n_inactive_voxels == int(((a + b) == 0).sum()) >= 20
    for test in ("uniformity", "association"):
        fdr = res.maps[f"stat-z_desc-{test}_level-voxel_corr-FDR"]
        assert res.n_survivors[test] == int(np.count_nonzero(fdr)) > 0
        z = res.maps[f"stat-z_desc-{test}"]
        assert np.all((fdr == 0) | (fdr == z))
        np.testing.assert_allclose(res.maps[f"stat-chi2_desc-{test}"], z**2, rtol=1e-12)
    # the uniformity FDR threshold is found over every mask voxel, inactive ones included
    p_all, _ = _p_of(one_way_chi2(a, n_sel))
    assert res.fdr_p_threshold["uniformity"] == ns_fdr(p_all, 0.01)


def test_p_maps_never_underflow_to_zero():
    a = np.r_[np.full(50, 1000), np.zeros(5000, int) + 1]
    res = mkdachi2(a, np.ones_like(a), 1000, 20000)
    p = res.maps["stat-p_desc-association"]
    assert p.min() > 0 and np.float32(p.min()) > 0
    assert res.maps["stat-logp_desc-association"].max() > 100  # the real tail, not the floor


def test_every_study_active_gives_no_association():
    a = np.array([3, 10, 0, 5])
    b = np.array([7, 30, 0, 1])
    res = mkdachi2(a, b, 10, 30)
    assert res.maps["stat-chi2_desc-association"][1] == 0.0
    assert res.maps["stat-p_desc-association"][1] == 1.0
    assert res.maps["stat-prob_desc-A"][1] == 1.0 and res.maps["stat-prob_desc-FgA"][1] == 0.25
    assert all(res.maps[k][2] == (1.0 if k.startswith("stat-p_") else 0.0) for k in res.maps)


def test_uniform_counts_give_zero_uniformity():
    res = mkdachi2(np.zeros(5), np.ones(5), 4, 6)
    assert np.all(res.maps["stat-chi2_desc-uniformity"] == 0)
    res = mkdachi2(np.full(5, 4), np.ones(5), 4, 6)
    assert np.all(res.maps["stat-z_desc-uniformity"] == 0)


@pytest.mark.parametrize("n_sel,n_unsel", [(0, 10), (10, 0)])
def test_empty_group_is_refused(n_sel, n_unsel):
    with pytest.raises(EmptySelectionError, match="holds no experiment"):
        mkdachi2(np.zeros(3), np.zeros(3), n_sel, n_unsel)


def test_counts_out_of_range_are_refused():
    with pytest.raises(ValueError, match="active counts"):
        mkdachi2(np.array([5]), np.array([0]), 4, 6)


# ---- sphere counts and coverage against naive binary maps ---------------------------------
def naive_maps(ijk, starts, shape, radius_vox):
    grid = np.indices(shape).reshape(3, -1).T
    maps = []
    for e in range(len(starts) - 1):
        m = np.zeros(len(grid), bool)
        for f in ijk[starts[e] : starts[e + 1]]:
            m |= ((grid - f) ** 2).sum(1) <= radius_vox**2
        maps.append(m.reshape(shape))
    return np.array(maps)


def test_active_counts_and_coverage_match_naive_maps(rng):
    shape = (14, 12, 10)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    offsets = sphere_offsets(6.0, affine)
    assert len(offsets) == 123  # NiMARE's 6 mm sphere on a 2 mm grid
    n_exp = 25
    counts = rng.integers(1, 6, n_exp)
    starts = np.r_[0, np.cumsum(counts)]
    ijk = np.c_[
        rng.integers(-1, shape[0] + 1, starts[-1]),
        rng.integers(0, shape[1], starts[-1]),
        rng.integers(0, shape[2], starts[-1]),
    ]
    ijk[:3] = ijk[3]  # repeated foci in one experiment count once
    mask = rng.random(shape) < 0.7
    group = rng.integers(-1, 2, n_exp)
    maps = naive_maps(ijk, starts, shape, 3.0)
    got = active_counts(ijk, starts, group, 2, mask, offsets)
    for g in (0, 1):
        assert np.array_equal(got[g], maps[group == g].sum(0)[mask])
    seed = np.zeros(shape, bool)
    seed[4:9, 3:8, 2:6] = True
    assert np.array_equal(covered_voxels(ijk, starts, seed, offsets), maps[:, seed].sum(1))
