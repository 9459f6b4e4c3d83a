"""Results that mean what they say (issue 13): the reference database does not depend on the
studysets a run selects, results are reported inside the ROI with tables that equal the
maps, reuse needs identical inputs, and p-values and seeds are valid by construction."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from csale_app.cli.parser import args_to_settings, build_parser
from csale_app.cli.run import main
from csale_app.settings import MAX_SEED, ROLES, Settings, options

from tests import report_pages
from tests.trees import tree_digest

FACES = ndimage.generate_binary_structure(3, 1)
#: Enough permutations for --voxel-thresh 0.01 (>= 102) and cluster-alpha 0.05.
FAST = ["--n-iters", "120", "--voxel-thresh", "0.01", "--nprocs", "2", "--quiet"]
#: A sphere in left cerebellar lobule VI: small enough that the MACM it seeds stays quick.
ROI_RUN = [
    "--roi-coords=-30,-62,-28",
    "--roi-radius",
    "12",
    "--macm-seed",
    "roi",
    "--min-experiments",
    "5",
    *FAST,
]


def saved_roi(folder: Path) -> np.ndarray:
    return np.asanyarray(nib.load(next(folder.glob("*_roi-*_mask.nii.gz"))).dataobj) > 0


def run(*args) -> int:
    return main([str(a) for a in args])


def stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def full_and_split(demo_input, tmp_path_factory):
    """One full run, and the same work split into one run per studyset label (a job array)
    into one folder, then a group run over that folder that reuses both."""
    root = tmp_path_factory.mktemp("split")
    full, split = root / "full", root / "split"
    assert run(demo_input, full, "group", *ROI_RUN) == 0
    for label in ("nback", "flanker"):
        assert run(demo_input, split, "group", "--studyset-label", label, *ROI_RUN) == 0
    assert run(demo_input, split, "group", *ROI_RUN) == 0
    return full, split


# ---- 1. the reference database ---------------------------------------------------------------
def test_split_runs_give_byte_identical_maps_and_tables(full_and_split):
    full, split = full_and_split
    for label in ("nback", "flanker"):
        a = tree_digest(full / f"studyset-{label}")
        b = tree_digest(split / f"studyset-{label}")
        assert any("meta-csale" in k for k in a) and any("macm-" in k for k in a)
        assert a == b, sorted(k for k in a if a.get(k) != b.get(k))


def test_group_run_after_the_array_reuses_both_studysets(full_and_split):
    _, split = full_and_split
    logs = sorted((split / "logs").glob("*.log"))
    assert len(logs) == 3
    assert logs[-1].read_text().count("reusing them") == 2


def test_database_is_every_studyset_and_is_stated(full_and_split, demo_input):
    full, _ = full_and_split
    prefix = "studyset-nback_space-MNI152NLin6Asym_res-2_meta-csale"
    side = json.loads((full / "studyset-nback" / f"{prefix}_stat-z_statmap.json").read_text())
    db = side["ReferenceDatabase"]
    assert db["files"] == ["flanker.tsv", "nback.tsv"]
    assert db["source"] == "every studyset in INPUT_DIR"
    assert db["n_experiments"] > 0 and db["n_foci"] > db["n_experiments"]
    macm = next((full / "studyset-flanker").glob("macm-*/*_meta-ale_stat-z_statmap.json"))
    assert json.loads(macm.read_text())["ReferenceDatabase"] == db


def test_database_equal_to_the_studyset_is_warned_everywhere(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    out = tmp_path / "out"
    code = run(
        inp,
        out,
        "group",
        "--analyses",
        "csale",
        "--n-iters",
        "30",
        "--voxel-thresh",
        "0.05",
        "--min-experiments",
        "5",
        "--quiet",
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "its own base rate" in err and "--database" in err
    assert "its own base rate" in next((out / "logs").glob("*.log")).read_text()
    assert "its own base rate" in report_pages.text(out)


# ---- 2. results inside the ROI; tables that equal maps --------------------------------------
def _check_table_equals_map(folder: Path, meta: str, inside: np.ndarray | None) -> int:
    thr_path = next(folder.glob(f"*_meta-{meta}_stat-z_desc-thresholded_statmap.nii.gz"))
    img = nib.load(thr_path)
    thr = np.asanyarray(img.dataobj) != 0
    table = pd.read_csv(next(folder.glob(f"*_meta-{meta}_clusters.tsv")), sep="\t")
    comps, n = ndimage.label(thr, FACES)
    assert n == len(table)
    if inside is not None:
        assert not (thr & ~inside).any()
    inv = np.linalg.inv(img.affine)
    for row in table.itertuples():
        ijk = np.round(inv @ [row.peak_x, row.peak_y, row.peak_z, 1])[:3].astype(int)
        comp = comps[tuple(ijk)]
        assert comp > 0, "peak outside the thresholded map"
        assert (comps == comp).sum() == row.size_voxels
    return n


def test_tables_equal_thresholded_maps_inside_the_roi(full_and_split):
    from csale_app.io.templates import load_brain_mask

    full, _ = full_and_split
    img = load_brain_mask("brain")
    n_rows = 0
    for label in ("nback", "flanker"):
        folder = full / f"studyset-{label}"
        roi = saved_roi(folder)
        for meta in ("ale", "csale"):
            n_rows += _check_table_equals_map(folder, meta, roi)
        peaks = pd.read_csv(next(folder.glob("*_meta-ale_peaks.tsv")), sep="\t")
        ijk = np.round(
            np.c_[peaks[["x", "y", "z"]].to_numpy(), np.ones(len(peaks))]
            @ np.linalg.inv(img.affine).T
        )[:, :3].astype(int)
        assert roi[tuple(ijk.T)].all()
        for macm in folder.glob("macm-*"):  # whole brain
            for meta in ("ale", "csale"):
                if list(macm.glob(f"*_meta-{meta}_clusters.tsv")):
                    n_rows += _check_table_equals_map(macm, meta, None)
    assert n_rows > 0


def test_reported_clusters_split_by_the_roi_on_a_synthetic_map():
    from csale_app.kernels.plan import build_grid
    from csale_app.stats.tables import reported_clusters

    shape = (7, 8, 9)
    grid = build_grid(np.ones(shape, bool))
    vol = np.zeros(shape, np.int32)
    vol[1:6, 2, 2] = 1  # one cluster of the analysis mask, 5 voxels in a row
    vol[3, 5:7, 6] = 2  # a second, not significant
    roi = np.ones(shape, bool)
    roi[3, :, :] = False  # the ROI cuts cluster 1 into two pieces of 2 voxels
    stat = np.zeros(shape, np.float32)
    stat[1:6, 2, 2] = [1, 5, 9, 2, 3]
    table, labels = reported_clusters(
        vol[grid.mask],
        np.array([True, False]),
        stat[grid.mask],
        grid,
        np.eye(4),
        roi[grid.mask],
        {"p_fwe_size": np.array([0.01, 0.5])},
        "peak",
        np.array([5, 2]),
    )
    assert len(table) == 2 and list(table["size_voxels"]) == [2, 2]
    assert list(table["analysis_cluster_size_voxels"]) == [5, 5]
    assert list(table["p_fwe_size"]) == [0.01, 0.01]
    assert sorted(table["peak"]) == [3.0, 5.0]  # the peak (9) lies outside the ROI
    out = grid.to_volume(labels)
    assert set(np.unique(out)) == {0, 1, 2} and not (out[3] > 0).any()


def test_roi_cut_by_the_brain_mask_is_warned(tmp_path, pain_json, capsys):
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    brain = np.asanyarray(img.dataobj) > 0
    box = np.zeros(brain.shape, np.uint8)
    box[30:60, 30:60, 20:50] = 1  # reaches past the brain at the edges
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    nib.save(nib.Nifti1Image(box, img.affine), tmp_path / "box.nii.gz")
    code = run(
        inp,
        tmp_path / "out",
        "group",
        "--analyses",
        "ale",
        "--roi",
        tmp_path / "box.nii.gz",
        "--n-iters",
        "25",
        "--min-experiments",
        "3",
        "--quiet",
    )
    assert code == 0
    n_all, n_out = int(box.sum()), int((box.astype(bool) & ~brain).sum())
    assert n_out > 0
    err = capsys.readouterr().err
    assert f"{n_out} of {n_all} ROI voxels" in err and "outside the brain mask" in err


# ---- 3. reuse only identical work -----------------------------------------------------------
def _sphere_roi(path: Path, centre_ijk) -> None:
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    g = np.indices(img.shape)
    d2 = sum((g[i] - c) ** 2 for i, c in enumerate(centre_ijk))
    nib.save(nib.Nifti1Image((d2 <= 36).astype(np.uint8), img.affine), path)


def _figure_counts(out: Path) -> tuple[int, int]:
    """(drawn, reused) of the last report, from the run logs (two runs in one second share
    a log file, appended)."""
    text = "".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))
    drawn, reused = re.findall(r"report written: .*; figures drawn (\d+), reused (\d+)", text)[-1]
    return int(drawn), int(reused)


def _figures_in(out: Path) -> set[str]:
    return set(re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", report_pages.text(out)))


def test_reuse_follows_roi_file_content_not_its_path(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    roi, out = tmp_path / "roi.nii.gz", tmp_path / "out"
    args = [
        "group",
        "--analyses",
        "ale",
        "--roi",
        roi,
        "--n-iters",
        "25",
        "--min-experiments",
        "1",
        "--quiet",
    ]
    _sphere_roi(roi, (45, 60, 45))
    assert run(inp, out, *args) == 0
    first_figures = _figures_in(out)
    assert run(inp, out, *args) == 0  # identical: reused, and so are the report's figures
    drawn, reused = _figure_counts(out)
    assert drawn == 0 and reused > 0
    assert _figures_in(out) == first_figures
    capsys.readouterr()
    _sphere_roi(roi, (30, 60, 45))  # same path, new content
    assert run(inp, out, *args) == 73
    assert "holds results of other inputs or settings" in capsys.readouterr().err
    assert run(inp, out, *args, "--overwrite") == 0
    drawn, reused = _figure_counts(out)
    assert drawn > 0  # another ROI: other pictures
    assert _figures_in(out) != first_figures
    stored = out / ".csale_work" / "report-figures"
    assert len(list(stored.glob("*.json"))) == drawn + reused  # only what this report shows
    mask = next((out / "studyset-pain").glob("*_roi-*_mask.nii.gz"))
    assert np.asanyarray(nib.load(mask).dataobj)[30, 60, 45] == 1


def test_adding_roi_to_input_dir_is_not_reused(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    out = tmp_path / "out"
    args = ["group", "--analyses", "ale", "--n-iters", "25", "--min-experiments", "1", "--quiet"]
    assert run(inp, out, *args) == 0
    _sphere_roi(inp / "roi.nii.gz", (45, 60, 45))
    capsys.readouterr()
    assert run(inp, out, *args) == 73
    assert run(inp, out, *args, "--overwrite") == 0
    assert list((out / "studyset-pain").glob("*_roi-roi_mask.nii.gz"))


def test_every_setting_has_a_role_and_reaches_the_cli_with_its_default(tmp_path):
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    for f in options():
        assert f.metadata.get("role") in ROLES, f.name
        if f.metadata["cli"]:
            flag = (f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",))[-1]
            assert flag in flags, f.name
    assert (
        args_to_settings(parser.parse_args([str(tmp_path), str(tmp_path), "group"])) == Settings()
    )


def test_digest_covers_exactly_the_result_settings():
    base = Settings()
    for f in options():
        if f.metadata["role"] != "result":
            continue
        other = {
            "analyses": ("ale",),
            "roi_coords": ((1.0, 2.0, 3.0),),
            "merge_contrasts": False,
            "kernel_fwhm": 9.0,
            "brain_mask": "gm",
            "csale_null": "deterministic",
            "macm_seed": "roi",
            "macm_coverage": 0.5,
            "term_vocab": "LDA50",
            "default_sample_size": 20.0,
        }.get(f.name)
        if other is None:
            other = (
                getattr(base, f.name) + 1
                if isinstance(getattr(base, f.name), int)
                else getattr(base, f.name) / 2
            )
        from dataclasses import replace

        assert replace(base, **{f.name: other}).digest() != base.digest(), f.name
    from dataclasses import replace

    assert replace(base, nprocs=7, quiet=True, studyset_labels=("a",)).digest() == base.digest()


# ---- 4. p-values and seeds valid by construction -----------------------------------------------
@pytest.mark.parametrize(
    "args,need",
    [
        (["--analyses", "csale", "--n-iters", "500"], "1002"),
        (["--analyses", "csale", "--n-iters", "1001"], "1002"),
        (["--analyses", "ale", "--n-iters", "1"], "21"),
        (["--analyses", "ale", "--n-iters", "20"], "21"),
        (["--analyses", "macm", "--n-iters", "100", "--voxel-thresh", "0.01"], "102"),
        (["--analyses", "ale", "--n-iters", "2", "--cluster-alpha", "0.5"], "3"),
    ],
)
def test_too_few_iterations_are_refused_with_the_smallest_count(tmp_path, capsys, args, need):
    assert run(tmp_path, tmp_path / "out", "group", *args) == 64
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and f"--n-iters {need} or more" in lines[0]
    assert not (tmp_path / "out").exists()


def test_valid_minimum_iterations_are_accepted(tmp_path):
    from csale_app.cli.parser import parse_settings

    _, s = parse_settings([str(tmp_path), str(tmp_path / "o"), "group", "--n-iters", "1002"])
    assert s.n_iters == 1002


def test_iterations_that_cannot_fit_in_memory_are_refused(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    code = run(
        inp, tmp_path / "out", "group", "--analyses", "csale", "--n-iters", "2000000000", "--quiet"
    )
    assert code == 64
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "GiB" in lines[0] and "--n-iters 2000000000" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "seed,ok",
    [("0", True), (str(MAX_SEED), True), (str(2**64), False), (str(2**70), False), ("-1", False)],
)
def test_random_seed_range_is_the_rngs(tmp_path, capsys, seed, ok):
    from csale_app.cli.parser import parse_settings

    argv = [str(tmp_path), str(tmp_path / "o"), "group", "--random-seed", seed]
    if ok:
        assert parse_settings(argv)[1].random_seed == int(seed)
    else:
        assert run(*argv) == 64
        assert "2**64 - 1" in capsys.readouterr().err


def test_no_written_p_is_zero_or_above_one_and_no_z_is_infinite(full_and_split):
    from csale_app.io.roi import dilate
    from csale_app.io.templates import load_brain_mask

    full, _ = full_and_split
    img = load_brain_mask("brain")
    brain = np.asanyarray(img.dataobj) > 0
    analysis = dilate(saved_roi(full / "studyset-nback"), 6.0, 2.0, brain)
    n_maps = 0
    for path in full.rglob("*_statmap.nii.gz"):
        data = np.asanyarray(nib.load(path).dataobj).astype(np.float64)
        assert np.isfinite(data).all(), path.name
        inside = brain if "macm-" in str(path) else analysis
        if "_stat-p_" in path.name:
            assert (data[inside] > 0).all() and (data <= 1).all(), path.name
        if "_stat-logp" in path.name:
            assert (data >= 0).all(), path.name
        n_maps += 1
    assert n_maps > 40


@pytest.mark.parametrize("size", ["0.4", "1e-300"])
def test_sample_size_below_one_is_65_naming_file_and_row(tmp_path, capsys, size):
    inp = tmp_path / "in"
    inp.mkdir()
    rows = ["study_id\tcontrast_id\tx\ty\tz\tspace\tsample_size"]
    for k in range(6):
        n = size if k == 3 else "12"
        rows += [f"s{k}\tc1\t{10 + k}\t-20\t30\tMNI\t{n}", f"s{k}\tc2\t-30\t{k}\t10\tMNI\t{n}"]
    (inp / "tiny.tsv").write_text("\n".join(rows) + "\n")
    code = run(
        inp,
        tmp_path / "out",
        "group",
        "--analyses",
        "ale",
        "--n-iters",
        "25",
        "--min-experiments",
        "1",
        "--quiet",
    )
    assert code == 65
    lines = stderr_lines(capsys)
    assert (
        len(lines) == 1 and "tiny.tsv:8" in lines[0] and "must be a finite number >= 1" in lines[0]
    )


def test_macm_over_a_database_that_is_the_studyset_is_warned(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    code = run(
        inp,
        tmp_path / "out",
        "group",
        "--analyses",
        "macm",
        "--macm-seed",
        "roi",
        "--roi-coords=38,4,2",
        "--roi-radius",
        "20",
        "--n-iters",
        "30",
        "--voxel-thresh",
        "0.05",
        "--min-experiments",
        "3",
        "--quiet",
    )
    assert code == 0
    assert "its own base rate" in capsys.readouterr().err
