"""C-SALE's cluster-extent map is the study's (Magielse et al. 2025, ``run_sale`` and
``cluster_extent_correction``): mask to the ROI first, then p < voxel threshold, faces
connectivity, clusters of more than k voxels. The study's procedure is re-implemented here
with scipy and applied to the tool's own p map and ROI mask."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from csale_app.cli.run import main
from csale_app.io.experiments import restrict_to_mask
from csale_app.io.roi import sphere_roi
from csale_app.kernels.engine import CPUBackend
from csale_app.kernels.plan import build_grid
from csale_app.settings import OptionValueError, subsample_size
from csale_app.stats.csale import CSALEParams, extent_labels, run_csale
from csale_app.stats.montecarlo import NullRun
from csale_app.stats.subsamples import (
    correlation_table,
    share_maps,
    subsample_count,
    subsample_units,
)
from csale_app.tasks import ClientLock, run_all

from tests import report_pages

STUDY_FACES = ndimage.generate_binary_structure(3, 1)


def study_extent(p_vol: np.ndarray, roi_vol: np.ndarray, voxel_thresh: float, k: int) -> np.ndarray:
    """The study's cluster-extent voxel set: ROI first, p < thresh, faces, size > k."""
    supra = roi_vol & (p_vol < voxel_thresh)
    labels, n = ndimage.label(supra, STUDY_FACES)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes > k)
    return np.isin(labels, big[big > 0])


def old_extent(p_vol, analysis_vol, roi_vol, voxel_thresh, k):
    """What the tool did before: clusters of the analysis mask, cut to the ROI afterwards."""
    labels, n = ndimage.label(analysis_vol & (p_vol < voxel_thresh), STUDY_FACES)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes > k)
    return np.isin(labels, big[big > 0]) & roi_vol


# ---- synthetic grid ---------------------------------------------------------------------------
K = 10


@pytest.fixture(scope="module")
def cut_clusters():
    """A 30 x 12 x 12 analysis mask whose ROI is x < 15, with clusters of p = 1e-4 that the
    ROI boundary cuts: a U whose arms inside the ROI hold 12 (> k) and 5 (< k) voxels and
    are joined outside it, a bar with 8 voxels inside and 20 outside, and two clusters wholly
    inside of exactly k and k + 1 voxels."""
    shape = (30, 12, 12)
    analysis = np.ones(shape, bool)
    roi = np.zeros(shape, bool)
    roi[:15] = True
    p = np.full(shape, 0.5)
    # U: arm 1 (x 3..14, y 1) = 12 voxels, arm 2 (x 10..14, y 5) = 5 voxels, joined outside
    p[3:15, 1, 1] = 1e-4
    p[10:15, 5, 1] = 1e-4
    p[15:20, 1, 1] = 1e-4
    p[19, 1:6, 1] = 1e-4
    p[15:20, 5, 1] = 1e-4
    # bar: 8 inside (x 7..14), 20 outside (x 15..34 clipped to 29 and folded along y)
    p[7:15, 9, 5] = 1e-4
    p[15:30, 9, 5] = 1e-4
    p[29, 9, 6:11] = 1e-4
    # wholly inside: exactly k (not kept) and k + 1 (kept)
    p[1:11, 9, 9] = 1e-4
    p[1:12, 3, 9] = 1e-4
    return p, analysis, roi


def test_study_rule_on_a_grid_whose_roi_cuts_clusters(cut_clusters):
    p, analysis, roi = cut_clusters
    grid = build_grid(analysis)
    labels = extent_labels(p[grid.mask], grid, roi[grid.mask], 0.001, K)
    ours = grid.to_volume(labels > 0).astype(bool)
    study = study_extent(p, roi, 0.001, K)
    np.testing.assert_array_equal(ours, study)
    # the study keeps the 12-voxel arm and the (k + 1)-voxel cluster, nothing else
    assert study.sum() == 12 + K + 1
    assert study[3:15, 1, 1].all() and not study[10:15, 5, 1].any()
    assert not study[7:15, 9, 5].any() and not study[1:11, 9, 9].any()
    # ... where clustering in the analysis mask first kept the 5-voxel arm and the bar
    before = old_extent(p, analysis, roi, 0.001, K)
    assert before.sum() == 12 + 5 + 8 + K + 1
    # one label per connected component of the map, each of more than k voxels
    comp, n = ndimage.label(ours, STUDY_FACES)
    assert n == labels.max() == 2
    assert all(np.bincount(labels)[1:] > K)


def test_study_rule_without_roi_is_the_analysis_mask_rule(cut_clusters):
    p, analysis, _ = cut_clusters
    grid = build_grid(analysis)
    ours = grid.to_volume(extent_labels(p[grid.mask], grid, None, 0.001, K) > 0).astype(bool)
    np.testing.assert_array_equal(ours, study_extent(p, analysis, 0.001, K))
    np.testing.assert_array_equal(ours, old_extent(p, analysis, analysis, 0.001, K))


def test_size_rule_is_strictly_more_than_k(cut_clusters):
    p, analysis, roi = cut_clusters
    grid = build_grid(analysis)
    for k in (0, 11, 12):
        ours = grid.to_volume(extent_labels(p[grid.mask], grid, roi[grid.mask], 0.001, k) > 0)
        np.testing.assert_array_equal(ours.astype(bool), study_extent(p, roi, 0.001, k))
    only_arm = grid.to_volume(extent_labels(p[grid.mask], grid, roi[grid.mask], 0.001, 11) > 0)
    assert only_arm.sum() == 12


# ---- the n-back / flanker data ---------------------------------------------------------------
#: n-back against the flanker base rate in the cerebellum (the demo's second run), with the
#: study's thresholds (p < 0.001, k = 50) and the fewest permutations that allow p < 0.001.
NBACK_ITERS = 1002
N_SUB = 3


def _image(folder, pattern):
    hits = sorted(folder.glob(pattern))
    assert len(hits) == 1, (pattern, hits)
    return np.asanyarray(nib.load(hits[0]).dataobj)


@pytest.fixture(scope="module")
def nback_vs_flanker(demo_input, tmp_path_factory):
    out = tmp_path_factory.mktemp("extent") / "out"
    assert (
        main(
            [
                str(demo_input),
                str(out),
                "group",
                "--analyses",
                "csale",
                "--studyset-label",
                "nback",
                "--database",
                str(demo_input / "flanker.tsv"),
                "--roi",
                "cerebellum",
                "--n-iters",
                str(NBACK_ITERS),
                "--nprocs",
                "2",
                "--subsamples",
                str(N_SUB),
                "--subsample-size",
                "0.5",
                "--quiet",
            ]
        )
        == 0
    )
    return out / "studyset-nback"


def test_study_rule_on_nback_against_flanker(nback_vs_flanker):
    folder = nback_vs_flanker
    p = _image(folder, "*_meta-csale_stat-p_statmap.nii.gz")
    roi = _image(folder, "*_roi-*_mask.nii.gz") > 0
    extent = _image(folder, "*_meta-csale_stat-z_desc-extentthresholded_statmap.nii.gz") != 0
    analysis = p > 0  # p >= 1/n inside the analysis mask, 0 outside it
    assert roi.sum() < analysis.sum() and not (roi & ~analysis).any()
    study = study_extent(np.where(analysis, p, 1.0), roi, 0.001, 50)
    assert study.sum() > 500  # the test is not about an empty map
    np.testing.assert_array_equal(extent, study)


def test_extent_cluster_table_rows_are_the_maps_connected_components(nback_vs_flanker):
    folder = nback_vs_flanker
    extent = _image(folder, "*_meta-csale_stat-z_desc-extentthresholded_statmap.nii.gz") != 0
    affine = nib.load(next(folder.glob("*_desc-extentthresholded_statmap.nii.gz"))).affine
    table = pd.read_csv(next(folder.glob("*_meta-csale_desc-extent_clusters.tsv")), sep="\t")
    comp, n = ndimage.label(extent, STUDY_FACES)
    sizes = np.bincount(comp.ravel())[1:]
    assert len(table) == n > 0
    assert sorted(table["size_voxels"], reverse=True) == sorted(sizes, reverse=True)
    assert (table["size_voxels"] > 50).all()
    inv = np.linalg.inv(affine)
    for row in table.itertuples():
        ijk = np.rint(inv[:3, :3] @ [row.peak_x, row.peak_y, row.peak_z] + inv[:3, 3])
        label = comp[tuple(ijk.astype(int))]
        assert label > 0 and sizes[label - 1] == row.size_voxels  # the peak is in its cluster
    summary = json.loads((folder / ".csale_provenance.json").read_text())
    assert summary["summary"]["analyses"]["csale"]["n_extent_clusters"] == n


def test_subsample_share_maps_and_correlations_on_nback(nback_vs_flanker):
    folder = nback_vs_flanker
    roi = _image(folder, "*_roi-*_mask.nii.gz") > 0
    table = pd.read_csv(
        next(folder.glob("*_meta-csale_desc-subsamples_correlations.tsv")), sep="\t"
    )
    side = json.loads(next(folder.glob("*_desc-subsamples_correlations.json")).read_text())
    assert len(table) == N_SUB and list(table["subsample"]) == [1, 2, 3]
    assert (table["n_experiments"] == 47).all()  # round(0.5 * 94)
    assert table["pearson_r"].between(-1, 1).all() and "ROI" in side["pearson_r"]["Description"]
    assert all(len(ids.split("|")) == 47 for ids in table["experiment_ids"])
    for desc, column in (
        ("subsamplesextent", "extent_voxels"),
        ("subsamplesclusterfwe", "significant_voxels"),
    ):
        share = _image(folder, f"*_meta-csale_stat-prob_desc-{desc}_statmap.nii.gz")
        assert share.min() >= 0 and share.max() <= 1 and share.max() > 0
        assert not share[~roi].any()  # thresholded: inside the ROI only
        assert set(np.round(np.unique(share) * N_SUB, 5)) <= set(range(N_SUB + 1))
        # the share is the mean of the subsamples' maps: its sum is their voxel counts' sum
        assert round(float(share.sum(dtype=np.float64)) * N_SUB) == table[column].sum()
    map_side = json.loads(next(folder.glob("*_desc-subsamplesextent_statmap.json")).read_text())
    assert "cluster-extent" in map_side["Statistic"] and map_side["Subsamples"] == N_SUB
    report = report_pages.text(folder.parent)
    for text in (
        "share of subsamples surviving the cluster-extent rule",
        "share of subsamples surviving the cluster-level FWE rule",
        "correlation of each subsample",
        "cluster-extent map (the study",
    ):
        assert text in report.replace("&#39;", "'"), text


# ---- subsample size ---------------------------------------------------------------------------
def test_subsample_size_is_a_count_or_a_fraction():
    assert subsample_size("25") == 25 and isinstance(subsample_size("25"), int)
    assert subsample_size("0.2") == 0.2 and isinstance(subsample_size("0.2"), float)
    assert subsample_size(" 2 ") == 2
    for bad in ("1", "0", "1.0", "2.5", "-3", "nan", "inf", "x", "", "0x10", "1e1"):
        with pytest.raises(OptionValueError):
            subsample_size(bad)
    assert subsample_count(25, 94) == 25 and subsample_count(0.5, 94) == 47
    assert subsample_count(0.2, 21) == 4 and subsample_count(93, 94) == 93
    for size, n in ((94, 94), (200, 94), (0.995, 94), (0.01, 94), (1, 94), (1.5, 94), (True, 94)):
        with pytest.raises(ValueError):
            subsample_count(size, n)


def test_bad_subsample_size_is_refused_before_any_output(pain_input, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                str(pain_input),
                str(out),
                "group",
                "--analyses",
                "csale",
                "--subsamples",
                "2",
                "--subsample-size",
                "21",
                "--quiet",
            ]
        )
        == 64
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert "--subsample-size 21" in err[-1] and "21 experiments" in err[-1]
    assert not out.exists()
    assert main([str(pain_input), str(out), "group", "--subsample-size", "1"]) == 64
    assert main([str(pain_input), str(out), "group", "--subsample-fraction", "0.5"]) == 64
    assert not out.exists()


# ---- subsamples as independent units ---------------------------------------------------------
class _Lock:
    """An executor as csale_app.tasks sees one: units run in threads under its lock."""

    lock = ClientLock()


def test_subsamples_do_not_depend_on_the_executor_and_follow_the_study_rule(
    pain_experiments, brain
):
    img, mask = brain
    roi = sphere_roi([(38.0, 4.0, 2.0)], 14.0, img, mask)
    analysis = sphere_roi([(38.0, 4.0, 2.0)], 20.0, img, mask).mask
    grid = build_grid(analysis)
    report_mask = roi.mask[grid.mask]
    exps = restrict_to_mask(pain_experiments, analysis)
    params = CSALEParams(120, voxel_thresh=0.01, min_cluster_size=5, seed=3)
    run = NullRun(CPUBackend(2), chunk_size=60)
    full = run_csale(exps, pain_experiments, grid, img.affine, report_mask, params, run)
    units = lambda: subsample_units(
        exps,
        pain_experiments,
        grid,
        img.affine,
        report_mask,
        params,
        run,
        full.maps["stat-z"],
        n_subsamples=3,
        size=0.6,
    )
    serial = run_all(None, units())
    side_by_side = run_all(_Lock(), units())
    for a, b in zip(serial, side_by_side):
        assert a.index == b.index and a.seed == b.seed and a.correlation == b.correlation
        np.testing.assert_array_equal(a.experiments, b.experiments)
        np.testing.assert_array_equal(a.extent, b.extent)
        np.testing.assert_array_equal(a.significant, b.significant)
    assert len({tuple(r.experiments) for r in serial}) == 3  # independent draws
    extent, fwe = share_maps(serial)
    np.testing.assert_array_equal(extent, np.mean([r.extent for r in serial], axis=0))
    np.testing.assert_array_equal(fwe, np.mean([r.significant for r in serial], axis=0))
    assert not extent[~report_mask].any() and not fwe[~report_mask].any()
    assert len(correlation_table(serial, exps)) == 3
    # each subsample's extent map is the study's rule on its own p map
    for r in serial:
        sub = run_csale(
            exps.subset(r.experiments),
            pain_experiments,
            grid,
            img.affine,
            report_mask,
            CSALEParams(120, voxel_thresh=0.01, min_cluster_size=5, seed=r.seed),
            run,
        )
        study = study_extent(grid.to_volume(sub.p, fill=1.0), roi.mask, 0.01, 5)
        np.testing.assert_array_equal(grid.to_volume(r.extent).astype(bool), study)
        np.testing.assert_array_equal(r.significant, sub.significant_labels > 0)
