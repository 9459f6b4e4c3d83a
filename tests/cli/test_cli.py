"""CLI: exit codes, one-line errors, end-to-end outputs queried with pybids, --nprocs."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csale_app.cli.run import main
from csale_app.names import PYBIDS_CONFIG

from tests.bids_check import assert_valid_bids

SMALL = ["--analyses", "ale", "--n-iters", "60", "--quiet", "--min-experiments", "5"]


def run_cli(args, capsys=None):
    code = main([str(a) for a in args])
    return code


def test_usage_error_is_64(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--n-iters", "zero"]) == 64
    assert main([str(tmp_path), str(tmp_path / "o"), "participant"]) == 64


def test_version_exits_0(capsys):
    assert main(["--version"]) == 0
    assert "csale-app" in capsys.readouterr().out


def test_missing_input_is_66(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "o"), "group"]) == 66
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def test_empty_selection_is_18(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert main([str(tmp_path / "in"), str(tmp_path / "o"), "group"]) == 18
    assert "no coordinate tables" in capsys.readouterr().err


def test_too_few_experiments_is_18(pain_input, tmp_path, capsys):
    code = main(
        [
            str(pain_input),
            str(tmp_path / "o"),
            "group",
            "--analyses",
            "ale",
            "--min-experiments",
            "50",
            "--quiet",
        ]
    )
    assert code == 18
    assert "min-experiments" in capsys.readouterr().err


def test_unwritable_output_is_73(pain_input, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main([str(pain_input), str(blocker / "out"), "group", *SMALL])
    assert code == 73
    assert str(blocker) in capsys.readouterr().err


def test_output_inside_input_is_refused(pain_input, capsys):
    assert main([str(pain_input), str(pain_input / "out"), "group", *SMALL]) == 73
    assert not (pain_input / "out").exists()


def test_malformed_input_is_65_without_traceback(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "bad.txt").write_text("// Reference=MNI\n// Study A\n// Subjects=10\n1 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "csale_app", str(d), str(tmp_path / "o"), "group", *SMALL],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 65
    assert "Traceback" not in proc.stderr
    assert "bad.txt:4" in proc.stderr


def test_end_to_end_ale_outputs_query_with_pybids(pain_input, tmp_path):
    from bids import BIDSLayout

    out = tmp_path / "out"
    assert main([str(pain_input), str(out), "group", *SMALL, "--nprocs", "2"]) == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    layout = BIDSLayout(out, validate=False, config=[str(out / PYBIDS_CONFIG)])
    maps = layout.get(studyset="pain", meta="ale", extension=".nii.gz")
    stats = {f.get_entities().get("stat") for f in maps}
    assert {"ale", "z", "p", "logp"} <= stats
    vfwe = layout.get(
        studyset="pain", meta="ale", stat="z", level="voxel", corr="FWE", extension=".nii.gz"
    )
    assert len(vfwe) == 1
    thr = layout.get(studyset="pain", meta="ale", desc="thresholded", extension=".nii.gz")
    assert len(thr) == 1
    side = json.loads(Path(thr[0].path.replace(".nii.gz", ".json")).read_text())
    assert side["NumberOfExperiments"] == 21 and side["RandomSeed"] is not None
    img = nib.load(maps[0].path)
    assert img.shape == (91, 109, 91)
    assert list((out / "logs").glob("*.log"))
    # the same command again reuses the finished results (no error, no --overwrite needed)
    assert main([str(pain_input), str(out), "group", *SMALL]) == 0
    # other settings without --overwrite: refused, nothing clobbered
    assert main([str(pain_input), str(out), "group", *SMALL, "--random-seed", "7"]) == 73
    assert (
        main([str(pain_input), str(out), "group", *SMALL, "--random-seed", "7", "--overwrite"]) == 0
    )
    assert_valid_bids(out)  # ALE, reused and overwritten: still a valid BIDS derivative


def test_nprocs_does_not_change_results(pain_input, tmp_path):
    """ALE and C-SALE (whole brain) maps and null tables are identical for 1 and 2 threads."""
    outs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        assert (
            main(
                [
                    str(pain_input),
                    str(out),
                    "group",
                    "--analyses",
                    "ale",
                    "csale",
                    "--n-iters",
                    "60",
                    "--voxel-thresh",
                    "0.05",
                    "--quiet",
                    "--min-experiments",
                    "5",
                    "--nprocs",
                    str(n),
                ]
            )
            == 0
        )
        outs.append(out)
    files = sorted(p.name for p in (outs[0] / "studyset-pain").glob("*.nii.gz"))
    assert any("meta-ale" in f for f in files) and any("meta-csale" in f for f in files)
    for name in files:
        a = np.asanyarray(nib.load(outs[0] / "studyset-pain" / name).dataobj)
        b = np.asanyarray(nib.load(outs[1] / "studyset-pain" / name).dataobj)
        np.testing.assert_array_equal(a, b, err_msg=name)
    for meta in ("ale", "csale"):
        name = f"studyset-pain_meta-{meta}_desc-null_values.tsv"
        t1 = (outs[0] / "studyset-pain" / name).read_text()
        assert t1 == (outs[1] / "studyset-pain" / name).read_text()
    null = outs[0] / "studyset-pain" / "studyset-pain_meta-csale_desc-null_values.tsv"
    assert (np.loadtxt(null, skiprows=1)[:, 1] > 0).any()  # the cluster null is exercised


def test_csale_with_roi_spheres_and_subsamples(pain_input, tmp_path):
    from bids import BIDSLayout

    out = tmp_path / "out"
    code = main(
        [
            str(pain_input),
            str(out),
            "group",
            "--analyses",
            "ale",
            "csale",
            "--roi-coords",
            "38,4,2",
            "2,4,52",
            "--roi-radius",
            "20",
            "--n-iters",
            "40",
            "--voxel-thresh",
            "0.05",
            "--subsamples",
            "2",
            "--min-experiments",
            "5",
            "--quiet",
        ]
    )
    assert code == 0
    layout = BIDSLayout(out, validate=False, config=[str(out / PYBIDS_CONFIG)])
    for meta in ("ale", "csale"):
        assert layout.get(studyset="pain", meta=meta, desc="thresholded", extension=".nii.gz")
    rate = layout.get(
        studyset="pain", meta="csale", stat="prob", desc="baserate", extension=".nii.gz"
    )[0]
    data = np.asanyarray(nib.load(rate.path).dataobj)
    assert data.sum() == pytest.approx(1.0, rel=1e-4)
    for desc in ("subsamplesextent", "subsamplesclusterfwe"):
        share = layout.get(studyset="pain", meta="csale", desc=desc, extension=".nii.gz")[0]
        vals = np.asanyarray(nib.load(share.path).dataobj)
        assert vals.min() >= 0 and vals.max() <= 1
    roi = list((out / "studyset-pain").glob("studyset-pain_roi-*_mask.nii.gz"))
    assert len(roi) == 1
    assert (out / "report.html").exists()
    assert_valid_bids(out)  # ALE + C-SALE with subsamples in an ROI
