"""Round trip: the same foci as Sleuth, TSV, CSV, NiMARE JSON and NIMADS JSON give the
same experiments and bit-identical ALE maps (ALE, p, z), with and without merged contrasts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from csale_app.io.experiments import _ICBM_OTHER, build_experiments
from csale_app.io.readers import read_studyset
from csale_app.kernels.plan import build_grid
from csale_app.stats.ale import kernels_for, observed_ale

from tests.formats import nimare_json

N_STUDIES = 9
TWO_CONTRASTS = {0, 3, 6}  # 9 studies, 3 of them with two contrasts: 12 experiments


def _make_experiments(brain, affine, seed=20261121):
    """12 experiments x 3-5 integer-mm foci inside the brain; some reported in Talairach."""
    rng = np.random.default_rng(seed)
    voxels = np.argwhere(brain)
    names = [
        "Smith2001",
        "Jones et al 2005",
        "Lee2010",
        "Garcia2012",
        "Miller 2014",
        "Chen2016",
        "Kim2018",
        "Novak2019",
        "Okafor2021",
    ]
    exps = []
    for s in range(N_STUDIES):
        space = "TAL" if s % 3 == 1 else "MNI"  # whole studies in one space
        for c in range(2 if s in TWO_CONTRASTS else 1):
            n_foci = int(rng.integers(3, 6))
            ijk = voxels[rng.choice(len(voxels), n_foci, replace=False)]
            mni = ijk @ affine[:3, :3].T + affine[:3, 3] + rng.integers(-1, 2, (n_foci, 3))
            if space == "TAL":  # report what tal2icbm maps back to (about) these MNI points
                mni = np.c_[mni, np.ones(n_foci)] @ _ICBM_OTHER.T
            xyz = np.round(mni[:, :3]).astype(int)
            exps.append(
                (
                    names[s],
                    f"con{c + 1}",
                    int(rng.integers(10, 31)),
                    space,
                    [tuple(int(v) for v in p) for p in xyz],
                )
            )
    assert len(exps) == 12
    return exps


def _sleuth(exps) -> str:
    blocks = []
    for study, contrast, n, space, foci in exps:
        ref = "Talairach" if space == "TAL" else "MNI"
        rows = "\n".join(f"{x}\t{y}\t{z}" for x, y, z in foci)
        blocks.append(f"// Reference={ref}\n// {study}\n// {contrast}\n// Subjects={n}\n{rows}\n")
    return "\n".join(blocks)


def _table(exps, sep: str, rng) -> str:
    rows = [
        (study, contrast, x, y, z, "Talairach" if space == "TAL" else "MNI152", n)
        for study, contrast, n, space, foci in exps
        for x, y, z in foci
    ]
    order = rng.permutation(len(rows))  # row order must not matter
    lines = [sep.join(["study_id", "contrast_id", "x", "y", "z", "space", "sample_size"])]
    lines += [sep.join(str(v) for v in rows[i]) for i in order]
    return "\n".join(lines) + "\n"


def _nimads(exps) -> str:
    studies: dict = {}
    for study, contrast, n, space, foci in exps:
        studies.setdefault(study, {"id": study, "name": study, "metadata": {}, "analyses": []})
        studies[study]["analyses"].append(
            {
                "id": contrast,
                "name": contrast,
                "metadata": {"sample_size": n},
                "points": [
                    {"space": "talairach" if space == "TAL" else "MNI", "coordinates": list(p)}
                    for p in foci
                ],
            }
        )
    return json.dumps(
        {"id": "roundtrip", "name": "roundtrip", "studies": list(studies.values())}, indent=2
    )


@pytest.fixture(scope="module")
def template():
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    brain = np.asanyarray(img.dataobj) > 0
    return img.affine, brain, build_grid(brain)


@pytest.fixture(scope="module")
def studyset_files(tmp_path_factory, template):
    affine, brain, _ = template
    exps = _make_experiments(brain, affine)
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("roundtrip")
    texts = {
        "sleuth": ("foci.txt", _sleuth(exps)),
        "tsv": ("foci.tsv", _table(exps, "\t", rng)),
        "csv": ("foci.csv", _table(exps, ",", rng)),
        "nimare-json": ("foci_nimare.json", nimare_json(exps)),
        "nimads-json": ("foci_nimads.json", _nimads(exps)),
    }
    files = {}
    for fmt, (name, text) in texts.items():
        (d / name).write_text(text, encoding="utf-8")
        files[fmt] = d / name
    return exps, files


def _ale(path: Path, template, merge: bool):
    affine, brain, grid = template
    foci = read_studyset(path)
    exps = build_experiments(foci, affine, brain.shape, merge_contrasts=merge)
    table, kernel_ids = kernels_for(exps, grid, None, float(abs(np.linalg.det(affine[:3, :3]))))
    return foci, exps, observed_ale(exps, grid, table, kernel_ids)


@pytest.mark.parametrize("merge", [False, True], ids=["per-contrast", "merged"])
def test_same_foci_in_every_format_give_identical_ale_maps(studyset_files, template, merge):
    exps_in, files = studyset_files
    results = {fmt: _ale(path, template, merge) for fmt, path in files.items()}
    ref_foci, ref_exps, ref_ale = results["sleuth"]

    n_expected = 12 if not merge else N_STUDIES
    assert ref_exps.n_experiments == n_expected
    assert ref_exps.n_foci == sum(len(e[4]) for e in exps_in)
    assert not ref_exps.warnings  # nothing dropped: every focus lies in the template
    assert (ref_foci["space"] == "TAL").sum() == sum(len(e[4]) for e in exps_in if e[3] == "TAL")
    assert ref_ale.stat.max() > 0.01 and np.isfinite(ref_ale.z).all()

    for fmt, (foci, exps, ale) in results.items():
        assert foci.attrs["format"] == fmt
        assert exps.ids == ref_exps.ids, fmt
        np.testing.assert_array_equal(exps.sample_size, ref_exps.sample_size, err_msg=fmt)
        np.testing.assert_array_equal(exps.focus_start, ref_exps.focus_start, err_msg=fmt)
        np.testing.assert_array_equal(
            np.sort(exps.xyz_mni, axis=0), np.sort(ref_exps.xyz_mni, axis=0), err_msg=fmt
        )
        assert np.array_equal(ale.stat, ref_ale.stat), fmt
        assert np.array_equal(ale.p, ref_ale.p), fmt
        assert np.array_equal(ale.z, ref_ale.z), fmt
        assert np.array_equal(ale.null_weights, ref_ale.null_weights), fmt


def test_talairach_foci_are_converted(studyset_files, template):
    """TAL experiments land where tal2icbm puts them (within rounding of the MNI draw)."""
    exps_in, files = studyset_files
    _, exps, _ = _ale(files["tsv"], template, merge=False)
    foci = exps.foci
    tal = foci[foci["space"] == "TAL"]
    assert len(tal) and (tal["converted_from"].str.contains("tal2icbm")).all()
    moved = np.abs(tal[["x_mni", "y_mni", "z_mni"]].to_numpy() - tal[["x", "y", "z"]].to_numpy())
    assert moved.max() > 1.0  # the conversion was applied, not skipped
    mni = foci[foci["space"] == "MNI"]
    np.testing.assert_array_equal(
        mni[["x_mni", "y_mni", "z_mni"]].to_numpy(), mni[["x", "y", "z"]].to_numpy()
    )
