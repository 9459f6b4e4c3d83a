"""Per-cluster contributions equal NiMARE 0.22's Jackknife and FocusCounter (pain dataset)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from csale_app.kernels.plan import build_grid
from csale_app.stats.ale import MAMaps, ale_statistic, kernels_for, observed_ma
from csale_app.stats.contributions import contributions, focus_counts, jackknife, summarize

TARGET = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
LABEL_MAP = "label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-positive"


@pytest.fixture(scope="module")
def nimare_diagnostics(pain_json):
    from nimare.correct import FWECorrector
    from nimare.dataset import Dataset
    from nimare.diagnostics import FocusCounter, Jackknife
    from nimare.meta.cbma.ale import ALE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(str(pain_json))
        result = ALE().fit(dset)
        cres = FWECorrector(method="montecarlo", n_iters=50, n_cores=1).transform(result)
        jk = Jackknife(target_image=TARGET, voxel_thresh=None).transform(cres)
        fc = FocusCounter(target_image=TARGET, voxel_thresh=None).transform(cres)
    return cres, jk, fc


@pytest.fixture(scope="module")
def ours(nimare_diagnostics, pain_experiments, brain):
    cres, jk, _ = nimare_diagnostics
    img, mask = brain
    grid = build_grid(mask)
    table, kid = kernels_for(pain_experiments, grid, None, 8.0)
    ma = observed_ma(pain_experiments, grid, table, kid)
    labels = np.rint(jk.get_map(LABEL_MAP, return_type="array")).astype(np.int32)
    df = contributions(
        ma, labels, pain_experiments.ids, grid, pain_experiments.ijk, pain_experiments.focus_start
    )
    return grid, ma, labels, df


def _nimare_table(result, diag):
    name = f"{TARGET}_diag-{diag}_tab-counts_tail-positive"
    tab = result.tables[name].set_index("id")
    tab.columns = [int(c.split()[-1]) for c in tab.columns]
    return tab.astype(float)


def _ours_wide(df, column):
    return df.pivot(index="experiment_id", columns="cluster_id", values=column).astype(float)


def test_same_clusters_and_experiments(nimare_diagnostics, ours):
    _, jk, _ = nimare_diagnostics
    _, _, labels, df = ours
    ref = _nimare_table(jk, "Jackknife")
    assert len(ref.columns) >= 3  # the pain dataset has several significant clusters
    assert sorted(df["cluster_id"].unique()) == sorted(ref.columns)
    assert sorted(df["experiment_id"].unique()) == sorted(ref.index)
    assert len(df) == len(ref.columns) * len(ref.index)


def test_jackknife_matches_nimare(nimare_diagnostics, ours):
    _, jk, _ = nimare_diagnostics
    _, _, _, df = ours
    ref = _nimare_table(jk, "Jackknife")
    got = _ours_wide(df, "jackknife").loc[ref.index, ref.columns]
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-6, rtol=0)
    assert (got.to_numpy() > 0.01).any()


def test_focus_counter_matches_nimare(nimare_diagnostics, ours):
    _, _, fc = nimare_diagnostics
    _, _, _, df = ours
    ref = _nimare_table(fc, "FocusCounter")
    got = _ours_wide(df, "n_foci_in_cluster").loc[ref.index, ref.columns]
    np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy())
    assert got.to_numpy().sum() > 0


def test_jackknife_equals_brute_force_leave_one_out(ours):
    _, ma, labels, _ = ours
    ids, jk = jackknife(ma, labels)
    full = ale_statistic(ma)
    for e in (0, 7, 20):
        rows = np.array([r for r in range(ma.n_experiments) if r != e])
        without = ale_statistic(ma, rows=rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            prop = 1 - np.nan_to_num(without / full)
        expect = [prop[labels == k].mean() for k in ids]
        np.testing.assert_allclose(jk[e], expect, atol=1e-6)


def test_tiny_synthetic_case():

    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    grid = build_grid(mask)
    # 8 mask voxels; experiment 0 touches voxels 0 and 1, experiment 1 touches voxel 1.
    ma = MAMaps(
        indptr=np.array([0, 2, 3]),
        cols=np.array([0, 1, 1], dtype=np.int32),
        vals=np.array([0.5, 0.5, 0.5], dtype=np.float32),
        n_mask=8,
    )
    labels = np.zeros(8, dtype=np.int32)
    labels[[0, 1]] = 1
    ids, jk = jackknife(ma, labels)
    # ALE: v0 = 0.5, v1 = 0.75. Without e0: v0 = 0 -> 1, v1 = 0.5 -> 1/3. Without e1: v1 1/3.
    np.testing.assert_allclose(jk[:, 0], [(1 + 1 / 3) / 2, (1 / 3) / 2], rtol=1e-6)
    ijk = grid.mask_ijk[[0, 0, 5, 1]]
    _, fc = focus_counts(labels, grid, ijk, np.array([0, 3, 4]), ids)
    assert fc[:, 0].tolist() == [2, 1]
    df = contributions(ma, labels, ["a", "<b>"], grid, ijk, np.array([0, 3, 4]))
    assert list(df.columns) == ["cluster_id", "experiment_id", "jackknife", "n_foci_in_cluster"]
    assert df["experiment_id"].tolist() == ["a", "<b>"]
    s = summarize(df)
    assert s[1].startswith("a (66.7 %, 2 foci)")


def test_no_clusters_gives_empty_table():

    grid = build_grid(np.ones((2, 2, 2), bool))
    ma = MAMaps(np.array([0, 1]), np.array([0], np.int32), np.array([0.1], np.float32), 8)
    df = contributions(
        ma, np.zeros(8, np.int32), ["a"], grid, np.zeros((1, 3), np.int32), np.array([0, 1])
    )
    assert df.empty and list(df.columns)[:2] == ["cluster_id", "experiment_id"]
    assert isinstance(summarize(df), pd.Series)
