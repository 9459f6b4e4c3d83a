"""MACM (SPEC §3): seed selection and whole-brain ALE on the selection.

Parity with NiMARE 0.22.1: ``Dataset.get_studies_by_mask`` (coordinates to voxels with
``mm2vox`` = ``np.round`` of the inverse affine, then "at least one focus in the mask") and
``nimare.workflows.macm_workflow`` (``get_studies_by_mask`` -> ``dset.slice(ids)`` ->
``ALE().fit`` on the selected experiments only, then Monte Carlo FWE). Also sphere seeds,
Neurosynth-style coverage selection against a slow plain-python reference, per-cluster seeds
and the "too few experiments" skip.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csale_app.cli.run import main
from csale_app.io.experiments import build_experiments
from csale_app.stats.selection import select_by_seed
from csale_app.io.readers import read_studyset
from csale_app.io.roi import sphere_roi
from csale_app.kernels.spheres import sphere_offsets
from csale_app.kernels.plan import build_grid
from csale_app.settings import Settings
from csale_app.stats.ale import kernels_for, observed_ale

from tests.bids_check import assert_valid_bids
from tests import report_pages

# A 10 mm sphere on the right anterior insula, where 8 of the 21 pain experiments have foci.
SPHERE = (38.0, 4.0, 4.0)
RADIUS = 10.0
SPACE = "space-MNI152NLin6Asym_res-2"


# ---- helpers ------------------------------------------------------------------------------
def nimare_dataset(path):
    from nimare.dataset import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dataset(str(path))


def mask_img(mask, affine):
    return nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), affine)


def nimare_selected(dset, mask, affine):
    return sorted(dset.get_studies_by_mask(mask_img(mask, affine)))


def our_ale_volume(exps, brain_mask):
    grid = build_grid(brain_mask)
    table, kid = kernels_for(exps, grid, None, 8.0)
    return grid.to_volume(observed_ale(exps, grid, table, kid).stat.astype(np.float64))


def nimare_ale_volume(dset, ids):
    from nimare.meta.cbma.ale import ALE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ALE().fit(dset.slice(ids))
    return np.asanyarray(res.get_map("stat").dataobj).astype(np.float64)


@functools.lru_cache(maxsize=None)
def _sphere_cached(centres, radius):
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    mask = sphere_roi([list(c) for c in centres], radius, img, np.asanyarray(img.dataobj) > 0).mask
    mask.setflags(write=False)
    return mask


def sphere(centres, radius):
    """sphere_roi(...).mask on the brain mask, cached (sphere_roi scans the whole grid)."""
    return _sphere_cached(tuple(tuple(float(v) for v in c) for c in centres), float(radius))


def no_report(monkeypatch):
    """The HTML report (figures) is tested elsewhere; skip it where only maps are checked."""
    from csale_app.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "write_report", lambda self, backend: None)


def box_mask(lo, hi, img, brain):
    ijk = np.indices(brain.shape).reshape(3, -1).T
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    return np.all((xyz >= lo) & (xyz <= hi), axis=1).reshape(brain.shape) & brain


def pain_input_dir(root: Path, pain_json: Path) -> Path:
    d = root / "in"
    d.mkdir()
    shutil.copy(pain_json, d / "pain.json")
    return d


def read_tsv(path):
    return pd.read_csv(path, sep="\t")


# ---- (1) unit-level parity with NiMARE on pain ---------------------------------------------
@pytest.fixture(scope="module")
def pain_dset(pain_json):
    return nimare_dataset(pain_json)


def test_selection_and_ale_match_nimare_on_a_mask(pain_dset, pain_experiments, brain):
    """A box on the mid-cingulate: selected experiments = get_studies_by_mask, and the ALE of
    the selection = NiMARE's ALE on dset.slice(ids) (what macm_workflow fits)."""
    img, mask = brain
    seed = box_mask((-10, -10, 30), (10, 30, 50), img, mask)
    selected, in_seed = select_by_seed(pain_experiments, seed)
    ours = sorted(np.array(pain_experiments.ids)[selected])
    ref = nimare_selected(pain_dset, seed, img.affine)
    assert ours == ref
    assert 3 <= len(ours) < pain_experiments.n_experiments  # some, not all
    assert np.all(in_seed[selected] > 0) and np.all(in_seed[~selected] == 0)

    sel = pain_experiments.subset(selected)
    assert sel.n_experiments == len(ref)
    diff = np.abs(our_ale_volume(sel, mask) - nimare_ale_volume(pain_dset, ref))
    assert diff.max() <= 1e-6


def test_selection_rounds_like_nimare_mm2vox(tmp_path, pain_json, brain, rng):
    """Foci moved off the grid, half of them by exactly half a voxel (rounding ties):
    the voxel each focus lands in, and so the selection, is NiMARE's."""
    img, mask = brain
    data = json.loads(Path(pain_json).read_text())
    for study in data.values():
        for contrast in study["contrasts"].values():
            coords = contrast["coords"]
            for ax in ("x", "y", "z"):
                vals = np.asarray(coords[ax], dtype=float)
                tie = rng.integers(-1, 2, len(vals)).astype(float)  # -1, 0, +1 mm
                off = rng.uniform(-1.9, 1.9, len(vals))
                coords[ax] = list(np.where(rng.random(len(vals)) < 0.5, vals + tie, vals + off))
    path = tmp_path / "jittered.json"
    path.write_text(json.dumps(data))
    exps = build_experiments(read_studyset(path), img.affine, mask.shape, merge_contrasts=False)
    dset = nimare_dataset(path)
    n_nonempty = 0
    for center, radius in [
        (SPHERE, 6.0),
        (SPHERE, 10.0),
        ((-36, 16, 2), 6.0),
        ((52, -24, 20), 6.0),
        ((0, 8, 40), 10.0),
    ]:
        seed = sphere([center], radius)
        ours = sorted(np.array(exps.ids)[select_by_seed(exps, seed)[0]])
        assert ours == nimare_selected(dset, seed, img.affine), (center, radius)
        n_nonempty += bool(ours)
    assert n_nonempty >= 3


# ---- (2) CLI run with a sphere seed vs macm_workflow ---------------------------------------
@pytest.fixture(scope="module")
def cli_sphere_run(tmp_path_factory, pain_json):
    root = tmp_path_factory.mktemp("macm_cli")
    inp = pain_input_dir(root, pain_json)
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        no_report(mp)
        code = main(
            [
                str(inp),
                str(out),
                "group",
                "--analyses",
                "macm",
                "--macm-seed",
                "roi",
                "--roi-coords",
                ",".join(f"{v:g}" for v in SPHERE),
                "--roi-radius",
                f"{RADIUS:g}",
                "--no-merge-contrasts",
                "--n-iters",
                "30",
                "--voxel-thresh",
                "0.05",
                "--min-experiments",
                "3",
                "--quiet",
            ]
        )
    return code, inp, out


@pytest.fixture(scope="module")
def nimare_macm(tmp_path_factory, cli_sphere_run, brain):
    """nimare.workflows.macm_workflow on the same database and the same sphere mask."""
    from nimare.workflows.macm import macm_workflow

    _, inp, _ = cli_sphere_run
    img, mask = brain
    seed = sphere([SPHERE], RADIUS)
    wdir = tmp_path_factory.mktemp("nimare_macm")
    nlog = logging.getLogger("nimare")
    level = nlog.level
    nlog.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macm_workflow(
                str(inp / "pain.json"),
                mask_img(seed, img.affine),
                output_dir=wdir,
                prefix="ref_",
                n_iters=5,
                n_cores=1,
            )
    finally:
        nlog.setLevel(level)
    return seed, wdir


def test_cli_sphere_macm_is_valid_bids(cli_sphere_run):
    code, _, out = cli_sphere_run
    assert code == 0
    assert_valid_bids(out)  # MACM seeded by an ROI (spheres)


def test_cli_sphere_macm_matches_nimare(
    cli_sphere_run, nimare_macm, pain_dset, brain, pain_experiments
):
    code, _, out = cli_sphere_run
    assert code == 0
    seed, wdir = nimare_macm
    img, mask = brain
    folder = out / "studyset-pain" / "macm-spheres1r10"
    prefix = "studyset-pain_macm-spheres1r10"
    assert folder.is_dir()

    # the written seed mask is the sphere ROI (sphere_roi: within 10 mm, inside the brain)
    written = np.asanyarray(nib.load(folder / f"{prefix}_mask.nii.gz").dataobj) > 0
    assert np.array_equal(written, seed)
    assert written.sum() == 515

    # selected experiments = NiMARE's get_studies_by_mask on the sphere
    table = read_tsv(folder / f"{prefix}_experiments.tsv")
    ref_ids = nimare_selected(pain_dset, seed, img.affine)
    assert sorted(table["experiment_id"]) == ref_ids
    assert 3 <= len(ref_ids) < 21
    assert table["selected"].all() and (table["foci_in_seed"] >= 1).all()
    n_ref = pain_dset.coordinates.groupby("id").size()
    assert table.set_index("experiment_id")["n_foci"].to_dict() == n_ref[ref_ids].to_dict()

    # whole-brain ALE of the selection = macm_workflow's ALE statistic
    ours = nib.load(folder / f"{prefix}_{SPACE}_meta-ale_stat-ale_statmap.nii.gz")
    ref = nib.load(wdir / "ref_stat.nii.gz")
    assert ours.shape == ref.shape and np.allclose(ours.affine, ref.affine)
    diff = np.abs(
        np.asanyarray(ours.dataobj).astype(np.float64)
        - np.asanyarray(ref.dataobj).astype(np.float64)
    )
    assert diff.max() <= 1e-6
    # MACM is whole-brain even with an ROI: ALE is non-zero far outside the seed
    assert (np.asanyarray(ours.dataobj) > 0).sum() > 20 * seed.sum()

    # the specific ALE (C-SALE) ran on the same selection; its ALE statistic is the same
    cs = nib.load(folder / f"{prefix}_{SPACE}_meta-csale_stat-ale_statmap.nii.gz")
    assert np.abs(np.asanyarray(cs.dataobj) - np.asanyarray(ours.dataobj)).max() <= 1e-6
    base = folder / f"{prefix}_{SPACE}_meta-csale_stat-prob_desc-baserate_statmap.nii.gz"
    rate = np.asanyarray(nib.load(base).dataobj).astype(np.float64)
    assert rate.sum() == pytest.approx(1.0, rel=1e-3) and (rate[~mask] == 0).all()
    # ... with the base rate of the whole database (all 21 experiments), not the selection
    from csale_app.stats.csale import base_rate_map

    grid = build_grid(mask)
    whole = grid.to_volume(base_rate_map(pain_experiments, grid, None, 8.0))
    assert np.abs(rate - whole).max() <= 1e-9 + 1e-5 * whole.max()

    prov = json.loads((out / "studyset-pain" / ".csale_provenance.json").read_text())
    macm = prov["summary"]["analyses"]["macm"]
    assert macm["seed"] == "roi"
    assert macm["seeds"]["spheres1r10"]["n_selected"] == len(ref_ids)
    assert macm["seeds"]["spheres1r10"]["ale"]["n_experiments"] == len(ref_ids)


# ---- (3) Neurosynth-style coverage selection ------------------------------------------------
#: the --mkda-radius default on the 2 mm template
SIX_MM = sphere_offsets(6.0, np.diag([2.0, 2.0, 2.0, 1.0]))


def slow_coverage_reference(foci_by_exp, seed_mask, affine, fraction, radius_mm=6.0):
    """Plain python: each focus goes to its nearest voxel (as Neurosynth maps peaks to the
    grid); an experiment is selected if the union of radius_mm spheres around its foci covers
    more than ``fraction`` of the seed voxels (Neurosynth's rule: 0 = any overlap)."""
    covered = slow_coverage_counts(foci_by_exp, seed_mask, affine, radius_mm)
    n_seed = int(np.count_nonzero(seed_mask))
    return np.array([c / n_seed > fraction for c in covered])


def slow_coverage_counts(foci_by_exp, seed_mask, affine, radius_mm=6.0):
    """Number of seed voxels within radius_mm of a focus, per experiment (plain python)."""
    a = [[float(v) for v in row] for row in affine[:3]]
    inv = np.linalg.inv(affine)
    b = [[float(v) for v in row] for row in inv[:3]]
    seed_xyz = []
    for i, j, k in zip(*np.nonzero(seed_mask)):
        i, j, k = int(i), int(j), int(k)
        seed_xyz.append(tuple(a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3] for r in range(3)))
    selected = []
    for foci in foci_by_exp:
        centres = []
        for x, y, z in foci:
            ijk = [round(b[r][0] * x + b[r][1] * y + b[r][2] * z + b[r][3]) for r in range(3)]
            centres.append(
                tuple(
                    a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3]
                    for r in range(3)
                )
            )
        covered = 0
        for sx, sy, sz in seed_xyz:
            if any(
                (sx - cx) ** 2 + (sy - cy) ** 2 + (sz - cz) ** 2 <= radius_mm**2
                for cx, cy, cz in centres
            ):
                covered += 1
        selected.append(covered)
    return selected


def foci_by_experiment(foci_df, ids):
    groups = {
        k: g[["x", "y", "z"]].to_numpy(float).tolist()
        for k, g in foci_df.groupby(
            foci_df["study_id"].astype(str) + "-" + foci_df["contrast_id"].astype(str)
        )
    }
    return [groups[i] for i in ids]


def synthetic_foci(rng, centre, n_exp=30):
    rows = []
    for e in range(n_exp):
        n = int(rng.integers(1, 7))
        xyz = np.asarray(centre) + rng.normal(0, 9, (n, 3))
        for x, y, z in xyz:
            rows.append(
                {
                    "study_id": f"s{e:02d}",
                    "contrast_id": "1",
                    "x": x,
                    "y": y,
                    "z": z,
                    "space": "MNI",
                    "sample_size": float(rng.integers(8, 40)),
                    "source_file": "synthetic",
                    "source_line": len(rows) + 1,
                }
            )
    return pd.DataFrame(rows)


def test_coverage_selection_matches_slow_reference_on_pain(pain_json, pain_experiments, brain):
    img, mask = brain
    foci = foci_by_experiment(read_studyset(pain_json), pain_experiments.ids)
    partial = 0
    for centre, radius in [(SPHERE, 10.0), ((52, -24, 20), 6.0)]:
        seed = sphere([centre], radius)
        for frac in (0.0, 0.05, 0.1, 0.2, 0.3):
            ours, counts = select_by_seed(pain_experiments, seed, frac, SIX_MM)
            ref = slow_coverage_reference(foci, seed, img.affine, frac)
            assert np.array_equal(ours, ref), (centre, radius, frac)
            partial += 0 < ours.sum() < len(ours)
            # the foci-in-seed counts are the same as without coverage
            assert np.array_equal(counts, select_by_seed(pain_experiments, seed)[1])
    assert partial >= 4


def test_coverage_selection_matches_slow_reference_off_grid(rng, brain):
    """Off-grid random foci clustered around a seed, so coverage varies from 0 to large;
    some experiments are selected by coverage without any focus inside the seed."""
    img, mask = brain
    centre = (-40.0, -50.0, 30.0)
    df = synthetic_foci(rng, centre)
    exps = build_experiments(df, img.affine, mask.shape, merge_contrasts=False)
    assert exps.n_experiments == 30
    foci = foci_by_experiment(df, exps.ids)
    seed = sphere([centre], 8.0)
    no_focus_but_covered = 0
    covered = slow_coverage_counts(foci, seed, img.affine)
    n_seed = int(seed.sum())
    # "more than F": an experiment covering exactly F of the seed is not selected, one voxel
    # more is; F = 0 selects every experiment whose spheres touch the seed, and no other
    for c in sorted({c for c in covered if c > 1})[:3]:
        ours, _ = select_by_seed(exps, seed, c / n_seed, SIX_MM)
        assert np.array_equal(ours, np.array(covered) > c), c
        assert np.array_equal(
            select_by_seed(exps, seed, (c - 0.5) / n_seed, SIX_MM)[0], np.array(covered) >= c
        )
    any_overlap, _ = select_by_seed(exps, seed, 0.0, SIX_MM)
    assert np.array_equal(any_overlap, np.array(covered) > 0)
    assert 0 < any_overlap.sum() < exps.n_experiments
    for frac in (0.02, 0.1, 0.25, 0.5):
        ours, counts = select_by_seed(exps, seed, frac, SIX_MM)
        ref = slow_coverage_reference(foci, seed, img.affine, frac)
        assert np.array_equal(ours, ref), frac
        assert 0 < ours.sum() < exps.n_experiments, frac
        no_focus_but_covered += int((ours & (counts == 0)).sum())
    assert no_focus_but_covered > 0
    # a two-sphere seed (union) as --roi-coords gives
    seed2 = sphere([centre, (40.0, -50.0, 30.0)], 8.0)
    ours, _ = select_by_seed(exps, seed2, 0.1, SIX_MM)
    assert np.array_equal(ours, slow_coverage_reference(foci, seed2, img.affine, 0.1))
    # default selection ("at least one focus in the seed"), same reference style
    at_least_one = np.array(
        [
            any(
                seed[tuple(int(v) for v in np.round(np.linalg.inv(img.affine) @ np.r_[f, 1.0])[:3])]
                for f in fx
            )
            for fx in foci
        ]
    )
    assert np.array_equal(select_by_seed(exps, seed)[0], at_least_one)


# ---- (4) per-cluster seeds -----------------------------------------------------------------
CLUSTERS = {1: ((38.0, 4.0, 4.0), 6.0), 2: ((-36.0, 16.0, 2.0), 6.0), 3: ((10.0, -18.0, 6.0), 6.0)}


def cluster_labels(grid, img, brain, which=(1, 2)):
    labels = np.zeros(grid.n_mask, dtype=np.int32)
    masks = {}
    for k in which:
        centre, radius = CLUSTERS[k]
        m = sphere([centre], radius) & grid.mask
        masks[k] = m
        labels[m[grid.mask]] = k
    return labels, masks


def test_macm_seeds_each_cluster_and_clusters(brain):
    from csale_app.stages import macm_seeds

    img, mask = brain
    grid = build_grid(mask)
    labels, masks = cluster_labels(grid, img, mask)
    res = SimpleNamespace(significant_labels=labels)
    roi = SimpleNamespace(label="myroi", mask=masks[1])

    def pipe(seed, roi=roi):
        return SimpleNamespace(settings=Settings(macm_seed=seed), roi=roi, grid=grid)

    kind, seeds, reason = macm_seeds(pipe("each-cluster"), res)
    assert (kind, reason) == ("each-cluster", None)
    assert [n for n, _, _ in seeds] == ["cluster1", "cluster2"]
    for (_, m, _), k in zip(seeds, (1, 2)):
        assert m.shape == mask.shape and np.array_equal(m, masks[k])

    kind, seeds, reason = macm_seeds(pipe("clusters"), res)
    assert reason is None and [n for n, _, _ in seeds] == ["clusters"]
    assert np.array_equal(seeds[0][1], masks[1] | masks[2])
    # default: clusters when C-SALE ran, else the ROI
    assert macm_seeds(pipe(None), res)[0] == "clusters"
    kind, seeds, reason = macm_seeds(pipe(None), None)
    assert kind == "roi" and seeds[0][0] == "myroi" and np.array_equal(seeds[0][1], masks[1])
    # nothing to seed: a reason, no seeds
    kind, seeds, reason = macm_seeds(pipe("each-cluster"), None)
    assert seeds == [] and "C-SALE" in reason
    empty = SimpleNamespace(significant_labels=np.zeros(grid.n_mask, np.int32))
    kind, seeds, reason = macm_seeds(pipe("each-cluster"), empty)
    assert seeds == [] and "no significant cluster" in reason
    kind, seeds, reason = macm_seeds(pipe("roi", None), res)
    assert seeds == [] and "no ROI" in reason


def test_macm_seeds_on_an_roi_analysis_grid(brain):
    """With an ROI, C-SALE labels live on the (dilated-ROI) analysis grid, not the brain."""
    from csale_app.stages import macm_seeds

    img, mask = brain
    analysis = sphere([SPHERE, (-36.0, 16.0, 2.0)], 14.0)
    grid = build_grid(analysis)
    labels, masks = cluster_labels(grid, img, mask)
    ctx = SimpleNamespace(settings=Settings(macm_seed="each-cluster"), roi=None, grid=grid)
    _, seeds, _ = macm_seeds(ctx, SimpleNamespace(significant_labels=labels))
    assert [n for n, _, _ in seeds] == ["cluster1", "cluster2"]
    assert all(np.array_equal(m, masks[k]) for (_, m, _), k in zip(seeds, (1, 2)))


def test_each_cluster_cli_gives_one_folder_per_cluster(
    monkeypatch, tmp_path, pain_json, pain_dset, brain
):
    """``--macm-seed each-cluster``: the studyset's C-SALE is replaced by a result with three
    significant clusters (two on pain hot spots, one where only 1 experiment reports a focus);
    the MACMs themselves run for real."""
    import csale_app.stages as stages

    img, mask = brain
    real = stages.csale_output
    seen = []

    def fake_csale_output(ctx, job, macm=None, exps=None, grid=None, source=None):
        seen.append(macm)
        if macm is None:
            labels, _ = cluster_labels(ctx.grid, img, mask, which=(1, 2, 3))
            return stages.AnalysisOutput(
                "csale",
                None,
                ctx.grid,
                ctx.affine,
                summary={
                    "n_clusters": 3,
                    "null_seconds": 0.0,
                    "n_extent_clusters": 3,
                    "n_experiments": job.experiments.n_experiments,
                },
                raw=SimpleNamespace(significant_labels=labels),
            )
        return real(ctx, job, macm, exps, grid, source)

    monkeypatch.setattr(stages, "csale_output", fake_csale_output)
    no_report(monkeypatch)
    inp = pain_input_dir(tmp_path, pain_json)
    out = tmp_path / "out"
    code = main(
        [
            str(inp),
            str(out),
            "group",
            "--analyses",
            "csale",
            "macm",
            "--macm-seed",
            "each-cluster",
            "--no-merge-contrasts",
            "--n-iters",
            "30",
            "--voxel-thresh",
            "0.05",
            "--min-experiments",
            "3",
            "--quiet",
        ]
    )
    assert code == 0
    assert seen == [None, "cluster1", "cluster2"]
    study = out / "studyset-pain"
    assert sorted(p.name for p in study.glob("macm-*")) == [
        "macm-cluster1",
        "macm-cluster2",
        "macm-cluster3",
    ]
    _, masks = cluster_labels(build_grid(mask), img, mask, which=(1, 2, 3))
    for k in (1, 2, 3):
        folder = study / f"macm-cluster{k}"
        prefix = f"studyset-pain_macm-cluster{k}"
        seed = np.asanyarray(nib.load(folder / f"{prefix}_mask.nii.gz").dataobj) > 0
        assert np.array_equal(seed, masks[k])
        ids = sorted(read_tsv(folder / f"{prefix}_experiments.tsv")["experiment_id"])
        assert ids == nimare_selected(pain_dset, masks[k], img.affine)
        ale = folder / f"{prefix}_{SPACE}_meta-ale_stat-ale_statmap.nii.gz"
        csale = folder / f"{prefix}_{SPACE}_meta-csale_stat-ale_statmap.nii.gz"
        assert ale.exists() == csale.exists() == (k != 3)
        if k != 3:
            assert len(ids) >= 3
            ref = nimare_ale_volume(pain_dset, ids)
            assert np.abs(np.asanyarray(nib.load(ale).dataobj) - ref).max() <= 1e-6
    summary = json.loads((study / ".csale_provenance.json").read_text())["summary"]
    macm = summary["analyses"]["macm"]
    assert macm["seed"] == "each-cluster"
    assert sorted(macm["seeds"]) == ["cluster1", "cluster2", "cluster3"]
    assert "min-experiments" in summary["skipped"]["macm-cluster3"]
    assert "skipped" in macm["seeds"]["cluster3"]
    assert_valid_bids(out)  # each-cluster seeds
    # --macm-seed clusters: one MACM seeded by the union of the clusters, also valid BIDS
    seen.clear()
    out = tmp_path / "out_clusters"
    code = main(
        [
            str(inp),
            str(out),
            "group",
            "--analyses",
            "csale",
            "macm",
            "--macm-seed",
            "clusters",
            "--no-merge-contrasts",
            "--n-iters",
            "30",
            "--voxel-thresh",
            "0.05",
            "--min-experiments",
            "3",
            "--quiet",
        ]
    )
    assert code == 0 and seen == [None, "clusters"]
    assert list((out / "studyset-pain" / "macm-clusters").glob("*_meta-ale_stat-z_statmap*"))
    assert_valid_bids(out)


# ---- (5) too few selected experiments --------------------------------------------------------
def test_too_few_selected_is_skipped_with_reason(tmp_path, pain_json, pain_experiments, brain):
    """The studyset has 12 experiments in the dilated ROI (>= 10), the coverage-selected MACM
    fewer: the MACM is skipped (no maps), the run succeeds and says why."""
    img, mask = brain
    inp = pain_input_dir(tmp_path, pain_json)
    out = tmp_path / "out"
    code = main(
        [
            str(inp),
            str(out),
            "group",
            "--analyses",
            "macm",
            "--macm-seed",
            "roi",
            "--roi-coords",
            ",".join(f"{v:g}" for v in SPHERE),
            "--roi-radius",
            f"{RADIUS:g}",
            "--macm-coverage",
            "0.1",
            "--no-merge-contrasts",
            "--n-iters",
            "30",
            "--voxel-thresh",
            "0.05",
            "--min-experiments",
            "10",
            "--quiet",
        ]
    )
    assert code == 0
    folder = out / "studyset-pain" / "macm-spheres1r10"
    prefix = "studyset-pain_macm-spheres1r10"
    seed = sphere([SPHERE], RADIUS)
    # the selection table is still written, and follows --macm-coverage
    foci = foci_by_experiment(read_studyset(pain_json), pain_experiments.ids)
    ref = slow_coverage_reference(foci, seed, img.affine, 0.1)
    ids = sorted(read_tsv(folder / f"{prefix}_experiments.tsv")["experiment_id"])
    assert ids == sorted(np.array(pain_experiments.ids)[ref])
    assert 0 < len(ids) < 10
    assert not list(folder.glob("*_statmap.nii.gz"))

    reason = f"{len(ids)} experiments selected < --min-experiments 10"
    summary = json.loads((out / "studyset-pain" / ".csale_provenance.json").read_text())["summary"]
    assert summary["skipped"]["macm-spheres1r10"] == reason
    assert summary["analyses"]["macm"]["seeds"]["spheres1r10"] == {"skipped": reason}
    log = next((out / "logs").glob("*.log")).read_text()
    assert reason in log
    report = report_pages.text(out)
    assert reason.replace("<", "&lt;") in report
