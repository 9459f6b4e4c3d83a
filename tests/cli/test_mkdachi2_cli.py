"""``--analyses mkdachi2`` and the MKDA chi-square of a MACM, from the CLI and the API.

The written maps are the statistics of the right two groups: the studyset against the
database's other experiments (a database that holds the studyset gives the same maps, its
overlap removed and counted), and a MACM seed's selection (a focus within --roi-radius of a
seed point, checked with a plain loop) against the rest of the database.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from csale_app.cli.run import main
from csale_app.io.database import load_database
from csale_app.io.experiments import build_experiments
from csale_app.io.readers import read_studyset
from csale_app.kernels.spheres import active_counts, sphere_offsets
from csale_app import names
from csale_app.stats.mkdachi2 import mkdachi2

SPACE = "space-MNI152NLin6Asym_res-2"
POINT = (-32.0, 22.0, 2.0)


def no_report(monkeypatch):
    from csale_app.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "write_report", lambda self, ctx: None)


def read_map(folder, prefix, stat):
    img = nib.load(folder / f"{prefix}_{SPACE}_meta-mkdachi2_{stat}_statmap.nii.gz")
    return np.asanyarray(img.dataobj)


def counts_of(exps, mask, affine):
    return active_counts(
        exps.ijk,
        exps.focus_start,
        np.zeros(exps.n_experiments, int),
        1,
        mask,
        sphere_offsets(6.0, affine),
    )[0]


@pytest.fixture(scope="module")
def reference(demo_input, brain):
    img, mask = brain
    nback, flanker = (
        build_experiments(read_studyset(demo_input / f"{t}.tsv"), img.affine, mask.shape)
        for t in ("nback", "flanker")
    )
    res = mkdachi2(
        counts_of(nback, mask, img.affine),
        counts_of(flanker, mask, img.affine),
        nback.n_experiments,
        flanker.n_experiments,
    )
    return nback, flanker, res


@pytest.mark.parametrize("database", ["flanker", "both"])
def test_cli_studyset_against_the_rest(
    monkeypatch, tmp_path, demo_input, brain, reference, database
):
    img, mask = brain
    nback, flanker, res = reference
    no_report(monkeypatch)
    out = tmp_path / "out"
    db = demo_input / "flanker.tsv" if database == "flanker" else demo_input
    code = main(
        [
            str(demo_input),
            str(out),
            "group",
            "--analyses",
            "mkdachi2",
            "--studyset-label",
            "nback",
            "--database",
            str(db),
            "--quiet",
        ]
    )
    assert code == 0
    folder = out / "studyset-nback"
    written = sorted(p.name for p in folder.glob("*_meta-mkdachi2_*_statmap.nii.gz"))
    assert written == sorted(
        names.map_filename("nback", "mkdachi2", m) for m in names.MKDACHI2_MAPS
    )
    for stat in names.MKDACHI2_MAPS:
        got = read_map(folder, "studyset-nback", stat)
        np.testing.assert_allclose(
            got[mask], res.maps[stat].astype(np.float32), rtol=1e-6, err_msg=stat
        )
        assert not got[~mask].any()
    side = json.loads(
        (
            folder
            / names.map_filename(
                "nback", "mkdachi2", "stat-z_desc-uniformity_level-voxel_corr-FDR"
            ).replace(".nii.gz", ".json")
        ).read_text()
    )
    assert side["SelectedExperiments"] == nback.n_experiments == 193
    assert side["UnselectedExperiments"] == flanker.n_experiments == 107
    # a database holding the studyset: its 193 experiments are removed, and counted
    assert side["RemovedOverlap"] == (0 if database == "flanker" else 193)
    assert side["SignificantVoxels"] == res.n_survivors["uniformity"] > 0
    assert side["FDRq"] == 0.01 and side["SphereRadiusMM"] == 6.0
    summary = json.loads((folder / ".csale_provenance.json").read_text())["summary"]
    assert summary["analyses"]["mkdachi2"]["n_unselected"] == 107


def test_api_matches_cli_numbers(demo_input, reference, brain):
    from csale_app import MKDAChi2

    _, _, res = reference
    _, mask = brain
    fit = MKDAChi2(fdr_q=0.01).fit(demo_input / "nback.tsv", database=demo_input / "flanker.tsv")
    got = np.asanyarray(fit.get_map("z_desc-association").dataobj)[mask]
    np.testing.assert_allclose(got, res.maps["stat-z_desc-association"].astype(np.float32))
    with pytest.raises(ValueError, match="fdr_q"):
        MKDAChi2(fdr_q=1.5)


def test_studyset_alone_as_database_skips_with_reason(monkeypatch, tmp_path, demo_input):
    no_report(monkeypatch)
    out = tmp_path / "out"
    code = main(
        [
            str(demo_input),
            str(out),
            "group",
            "--analyses",
            "mkdachi2",
            "--studyset-label",
            "flanker",
            "--database",
            str(demo_input / "flanker.tsv"),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "studyset-flanker" / ".csale_provenance.json").read_text())[
        "summary"
    ]
    assert "no experiment outside the studyset" in summary["skipped"]["mkdachi2"]
    assert not list((out / "studyset-flanker").glob("*mkdachi2*"))


def test_macm_of_a_coordinate_seed_writes_the_mkdachi2_family(
    monkeypatch, tmp_path, demo_input, brain
):
    img, mask = brain
    no_report(monkeypatch)
    out = tmp_path / "out"
    code = main(
        [
            str(demo_input),
            str(out),
            "group",
            "--analyses",
            "macm",
            "--studyset-label",
            "nback",
            "--roi-coords",
            ",".join(f"{v:g}" for v in POINT),
            "--roi-radius",
            "12",
            "--n-iters",
            "40",
            "--voxel-thresh",
            "0.05",
            "--min-experiments",
            "5",
            "--quiet",
        ]
    )
    assert code == 0
    folder = out / "studyset-nback" / "macm-spheres1r12"
    prefix = "studyset-nback_macm-spheres1r12"
    db = load_database(
        [demo_input / "nback.tsv", demo_input / "flanker.tsv"], img.affine, mask.shape
    )
    # selection: a focus within 12 mm of the point (plain loop over experiments and foci)
    selected = np.array(
        [
            any(
                np.linalg.norm(np.asarray(f) - POINT) <= 12.0
                for f in db.xyz_mni[db.focus_start[e] : db.focus_start[e + 1]]
            )
            for e in range(db.n_experiments)
        ]
    )
    ids = sorted(
        __import__("pandas").read_csv(folder / f"{prefix}_experiments.tsv", sep="\t")[
            "experiment_id"
        ]
    )
    assert ids == sorted(np.array(db.ids)[selected])
    assert 20 < selected.sum() < db.n_experiments
    ref = mkdachi2(
        counts_of(db.subset(selected), mask, img.affine),
        counts_of(db.subset(~selected), mask, img.affine),
        int(selected.sum()),
        int((~selected).sum()),
    )
    for stat in names.MKDACHI2_MAPS:
        got = read_map(folder, prefix, stat)
        np.testing.assert_allclose(
            got[mask], ref.maps[stat].astype(np.float32), rtol=1e-6, err_msg=stat
        )
    assert ref.n_survivors["association"] > 0
    summary = json.loads((out / "studyset-nback" / ".csale_provenance.json").read_text())["summary"]
    seed = summary["analyses"]["macm"]["seeds"]["spheres1r12"]
    assert seed["mkdachi2"]["n_selected"] == int(selected.sum())
    assert seed["selection"] == "a focus within 12 mm of a seed point"
