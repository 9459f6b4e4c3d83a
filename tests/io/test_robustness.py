"""Robustness of the command line: malformed inputs, a read-only INPUT_DIR, SIGTERM, ROI rules.

Most cases call ``csale_app.cli.run.main`` in-process (imports are paid once); an exception
escaping ``main`` would fail the test, so in-process runs also show that no traceback is
printed. One subprocess case checks what really reaches stderr, and the SIGTERM case needs
a real process.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csale_app.cli.run import main
from csale_app.errors import (
    EXIT_CANT_CREATE,
    EXIT_DATA,
    EXIT_NO_INPUT,
    EXIT_OK,
)

from tests import report_pages

BAD = Path(__file__).parents[1] / "data" / "bad"
ALE_FAST = ["--analyses", "ale", "--n-iters", "25", "--quiet", "--min-experiments", "1"]
CSALE_ROI = [
    "--analyses",
    "csale",
    "--n-iters",
    "30",
    "--voxel-thresh",
    "0.05",
    "--min-experiments",
    "3",
    "--quiet",
]
ERROR_PREFIX = "csale-app: error: "


def _expected():
    with open(BAD / "EXPECTED.tsv", newline="", encoding="utf-8") as handle:
        return [
            (r["file"], int(r["line"]), r["message_regex"])
            for r in csv.DictReader(handle, delimiter="\t")
        ]


EXPECTED = _expected()


def _sidecar(name: str) -> Path | None:
    side = BAD / (Path(name).stem + ".json")
    return side if name.startswith("tsv_sidecar_") and side.is_file() else None


def _stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _run(args) -> int:
    return main([str(a) for a in args])


# --------------------------------------------------------------------------- malformed inputs


def test_bad_cases_cover_at_least_30_files_of_every_format():
    assert len(EXPECTED) >= 30
    prefixes = {name.split("_")[0] for name, _, _ in EXPECTED}
    assert {"sleuth", "tsv", "csv", "nimare", "nimads", "json"} <= prefixes


@pytest.mark.parametrize(("name", "line", "regex"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_bad_file_through_the_cli(name, line, regex, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(BAD / name, inp / name)
    side = _sidecar(name)
    if side is not None:
        shutil.copy(side, inp / side.name)
    out = tmp_path / "out"

    code = _run([inp, out, "group", *ALE_FAST])

    lines = _stderr_lines(capsys)
    assert code == EXIT_DATA, lines
    assert len(lines) == 1, lines  # exactly one line: no traceback, no warning noise
    msg = lines[0]
    assert msg.startswith(ERROR_PREFIX), msg
    named = side.name if side is not None else name
    assert f"{inp / named}:{line}: " in msg, msg  # the file (full path) and its line/row
    assert re.search(regex, msg), msg
    assert "Traceback" not in msg
    assert not list(out.glob("studyset-*")), "no results for a refused input"
    assert sorted(p.name for p in inp.iterdir()) == sorted({name, named})


def test_bad_file_subprocess_prints_one_line_and_no_traceback(tmp_path):
    """The real process: stderr holds one error line (deep JSON nesting, a RecursionError risk)."""
    name = "json_deeply_nested.json"
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(BAD / name, inp / name)
    proc = subprocess.run(
        [sys.executable, "-m", "csale_app", str(inp), str(tmp_path / "out"), "group", *ALE_FAST],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == EXIT_DATA, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(ERROR_PREFIX), proc.stderr
    assert f"{name}:1: " in lines[0] and "nested too deeply" in lines[0]


def test_missing_sample_size_is_65_with_file_and_line(tmp_path, capsys):
    """Sample sizes are checked after parsing (build_experiments); still file:line and 65."""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "nosubjects.txt").write_text(
        "// Reference=MNI\n// A, 2001\n// Subjects=12\n10 20 30\n\n// B, 2002\n-4 8 52\n"
    )
    code = _run([inp, tmp_path / "out", "group", *ALE_FAST])
    lines = _stderr_lines(capsys)
    assert code == EXIT_DATA
    assert len(lines) == 1 and f"{inp / 'nosubjects.txt'}:7: " in lines[0], lines
    assert "sample size" in lines[0] and "--kernel-fwhm" in lines[0]


def test_foci_outside_the_template_are_dropped_with_warnings(tmp_path, capsys):
    """Foci outside the bounding box: warn, drop, count; an experiment left empty goes."""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "edge.txt").write_text(
        "// Reference=MNI\n"
        "// A, 2001\n// Subjects=12\n40 -20 16\n-40 -20 16\n\n"
        "// B, 2002\n// Subjects=14\n38 -22 14\n300 0 0\n\n"
        "// C, 2003\n// Subjects=16\n0 200 0\n0 0 -300\n"
    )
    out = tmp_path / "out"
    assert _run([inp, out, "group", *ALE_FAST]) == EXIT_OK
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "3 foci outside the template's bounding box were dropped" in err
    assert f"{inp / 'edge.txt'}:10" in err  # the first dropped focus, by file and line
    assert "experiment 'C, 2003' dropped" in err
    table = (out / "studyset-edge" / "studyset-edge_desc-experiments_table.tsv").read_text()
    assert "dropped: no foci inside the template" in table


# --------------------------------------------------------------------------- read-only input


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root (hidden ones too): content hash, size, mtime, mode."""
    snap = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        snap[str(p.relative_to(root))] = (
            digest,
            st.st_size,
            st.st_mtime_ns,
            stat.S_IMODE(st.st_mode),
        )
    return snap


def _chmod_tree(root: Path, file_mode: int, dir_mode: int) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        os.chmod(p, dir_mode if p.is_dir() else file_mode)
    os.chmod(root, dir_mode)


def test_read_only_input_dir_is_never_written(pain_input, tmp_path, capsys):
    """INPUT_DIR read-only (0555/0444) runs to completion and is byte-identical afterwards.

    Tests often run as root, where permission bits do not stop writes, so the tree is also
    hashed: contents, sizes, modes and mtimes of every file and folder (a folder's mtime
    changes when anything is created, renamed or deleted in it) must not change.
    """
    (pain_input / "database").mkdir()  # an unused sub-folder and a README: untouched too
    shutil.copy(pain_input / "pain.json", pain_input / "database" / "reference.json")
    (pain_input / "README.txt").write_text("pain studyset\n")
    _chmod_tree(pain_input, 0o444, 0o555)
    before = _snapshot(pain_input)
    out = tmp_path / "out"
    try:
        code = _run([pain_input, out, "group", "--analyses", "ale", "--n-iters", "30", "--quiet"])
    finally:
        after = _snapshot(pain_input)
        _chmod_tree(pain_input, 0o644, 0o755)  # let pytest clean up as a normal user
    assert code == EXIT_OK, capsys.readouterr().err
    assert after == before
    assert (
        out
        / "studyset-pain"
        / "studyset-pain_space-MNI152NLin6Asym_res-2_meta-ale_stat-ale_statmap.nii.gz"
    ).is_file()
    assert (out / "report.html").is_file()


# --------------------------------------------------------------------------- SIGTERM


FINAL_TOP_LEVEL = {"dataset_description.json", ".bidsignore", "README.md", "code", "logs"}


def _check_no_partial_outputs(out: Path) -> None:
    """What may sit in OUTPUT_DIR after a killed run, and that each such file is complete.

    Allowed: dataset_description.json, code/csale_app_pybids_config.json (valid JSON),
    README.md, .bidsignore, logs/*.log, and the hidden checkpoint folder .csale_work/ whose chunk files
    must each load. Not allowed: any studyset-*/ results folder, report.html, a staging
    folder (a killed run discards its own), or any temporary ``*.part*`` file anywhere.
    """
    names = {p.name for p in out.iterdir()}
    assert names - {".csale_work"} <= FINAL_TOP_LEVEL, names
    assert not list(out.glob("studyset-*")), "a results folder under its final name"
    assert not (out / "report.html").exists()
    assert not [p for p in out.iterdir() if "staging" in p.name or p.name.startswith(".old-")]
    assert not [p for p in out.rglob("*") if ".part" in p.name], "temporary file left over"
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "csale_app"
    config = out / "code" / "csale_app_pybids_config.json"
    if config.exists():
        assert json.loads(config.read_text())
    if (out / ".bidsignore").exists():
        assert "/studyset-*" in (out / ".bidsignore").read_text().splitlines()
    assert all(p.suffix == ".log" for p in (out / "logs").iterdir())
    for chunk in (out / ".csale_work").rglob("*"):
        if chunk.is_file() and "report-figures" not in chunk.parts:  # a report's, by content
            with np.load(chunk) as data:
                assert data.files, chunk


def test_sigterm_leaves_no_partial_file_under_a_final_name(pain_input, tmp_path, capsys):
    """SIGTERM during the permutation pass: exit 130, one line, nothing partial published.

    The signal is sent once the first checkpoint exists, when every compiled function is
    loaded. (Earlier, while numba unpickles cached functions, the KeyboardInterrupt that the
    SIGTERM handler in cli/run.py raises can surface as a SystemError, i.e. exit 1, and once
    a segfault was seen: the handler should set a flag checked between chunks instead.)
    """
    out = tmp_path / "out"
    # -X faulthandler: should the process crash instead, the assertion shows where
    cmd = [
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "csale_app",
        str(pain_input),
        str(out),
        "group",
        "--analyses",
        "ale",
        "--nprocs",
        "1",
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd + ["--n-iters", "200000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        # wait until the permutation pass runs (its first checkpoint is written); results are
        # staged only once every analysis of the studyset is computed, so nothing is under a
        # final name or in a staging folder yet
        while time.monotonic() < deadline and proc.poll() is None:
            if list(out.glob(".csale_work/*-ale-*/chunk-*.npz")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before SIGTERM: {proc.communicate()}"
        assert list(out.glob(".csale_work/*-ale-*/chunk-*.npz")), "no permutation chunk done"
        assert not list(out.glob("studyset-*")), sorted(p.name for p in out.iterdir())
        # SIGTERM is honoured between permutation chunks (compiled code does not poll
        # signals), so the run may finish its current chunk first
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert proc.returncode == 130, (proc.returncode, err, sorted(p.name for p in out.iterdir()))
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX) and "interrupted" in lines[0]
    _check_no_partial_outputs(out)

    # the same OUTPUT_DIR then takes a complete run
    code = _run(
        [
            pain_input,
            out,
            "group",
            "--analyses",
            "ale",
            "--n-iters",
            "30",
            "--nprocs",
            "1",
            "--quiet",
        ]
    )
    assert code == EXIT_OK, capsys.readouterr().err
    final = out / "studyset-pain"
    assert (final / ".csale_provenance.json").is_file()
    assert (
        final / "studyset-pain_space-MNI152NLin6Asym_res-2_meta-ale_stat-ale_statmap.nii.gz"
    ).is_file()
    assert not [p for p in out.iterdir() if "staging" in p.name or p.name.startswith(".old-")]
    assert not [p for p in out.rglob("*") if ".part" in p.name]
    assert not [p for p in final.iterdir() if p.name.startswith(".csale_staging")]


# --------------------------------------------------------------------------- ROI rules


def _template():
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    return img, np.asanyarray(img.dataobj) > 0


def _mm(shape, affine) -> np.ndarray:
    ijk = np.indices(shape).reshape(3, -1).T
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


GRID3 = np.diag([3.0, 3.0, 3.0, 1.0]) + np.array(
    [[0, 0, 0, -90], [0, 0, 0, -126], [0, 0, 0, -72], [0, 0, 0, 0]]
)
SHAPE3 = (70, 73, 61)  # 3 mm voxels, x up to +117 mm: reaches beyond the template's box
CENTRES = np.array([[36.0, 16.0, 4.0], [-36.0, 16.0, 4.0]])  # insulae: many pain foci
RADIUS = 12.0


def _roi_3mm(path: Path, values: np.ndarray) -> Path:
    img = nib.Nifti1Image(values.astype(np.float32), GRID3)
    nib.save(img, str(path))
    return path


def _roi_mask_file(out: Path) -> Path:
    masks = list((out / "studyset-pain").glob("studyset-pain_roi-*_mask.nii.gz"))
    assert len(masks) == 1, masks
    return masks[0]


def _check_on_template(mask_file: Path) -> np.ndarray:
    img, brain = _template()
    written = nib.load(str(mask_file))
    assert written.shape == brain.shape
    assert np.allclose(written.affine, img.affine)
    data = np.asanyarray(written.dataobj)
    assert set(np.unique(data)) <= {0, 1}
    mask = data > 0
    assert not (mask & ~brain).any(), "the ROI is kept inside the brain mask"
    assert json.loads(mask_file.with_name(mask_file.name.replace(".nii.gz", ".json")).read_text())
    return mask


def test_nonbinary_roi_on_another_grid_is_resampled(pain_input, tmp_path, capsys):
    xyz3 = _mm(SHAPE3, GRID3)
    dist = np.min([np.linalg.norm(xyz3 - c, axis=-1) for c in CENTRES], axis=0)
    values = np.where(dist <= RADIUS, 1 + np.floor(dist / RADIUS * 4.999), 0)  # 0..5
    assert set(np.unique(values)) == {0, 1, 2, 3, 4, 5}
    roi = _roi_3mm(tmp_path / "insula_3mm.nii.gz", values)
    out = tmp_path / "out"

    code = _run([pain_input, out, "group", *CSALE_ROI, "--roi", roi])

    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert "Traceback" not in err
    warn = [line for line in err.splitlines() if "insula_3mm.nii.gz" in line]
    assert any("resampled" in line and "nearest" in line for line in warn), err
    assert any("not binary" in line for line in warn), err
    mask = _check_on_template(_roi_mask_file(out))
    # nearest-neighbour: every kept 2 mm voxel is near a sphere, the sphere's core is kept
    img, brain = _template()
    d2 = np.min(
        [np.linalg.norm(_mm(brain.shape, img.affine) - c, axis=-1) for c in CENTRES], axis=0
    )
    slack = 3.0 * np.sqrt(3) / 2 + 1.0
    assert (d2[mask] <= RADIUS + slack).all()
    assert mask[(d2 <= RADIUS - slack) & brain].all()
    assert 1000 < mask.sum() < 3000
    assert list((out / "studyset-pain").glob("*_meta-csale_stat-z_statmap.nii.gz"))
    assert "resampled" in report_pages.text(out)


@pytest.mark.parametrize("where", ["all-zero", "outside-the-box", "outside-the-brain"])
def test_roi_empty_after_resampling_is_65(where, pain_input, tmp_path, capsys):
    xyz3 = _mm(SHAPE3, GRID3)
    if where == "all-zero":
        values = np.zeros(SHAPE3)
    elif where == "outside-the-box":
        values = (xyz3[..., 0] > 100).astype(float) * 3  # the template ends at x = +90 mm
    else:  # inside the template's box, but a corner with no brain
        values = ((xyz3[..., 0] < -80) & (xyz3[..., 1] < -110) & (xyz3[..., 2] < -60)) * 1.0
    assert where == "all-zero" or values.any()
    roi = _roi_3mm(tmp_path / f"empty_{where}.nii.gz", values)
    out = tmp_path / "out"

    code = _run([pain_input, out, "group", *CSALE_ROI, "--roi", roi])

    lines = _stderr_lines(capsys)
    assert code == EXIT_DATA, lines
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1 and str(roi) in errors[0] and "empty" in errors[0], lines
    assert not any("Traceback" in line for line in lines)
    assert not list(out.glob("studyset-*"))


def test_missing_roi_file_is_66(pain_input, tmp_path, capsys):
    code = _run(
        [pain_input, tmp_path / "out", "group", *CSALE_ROI, "--roi", tmp_path / "nope.nii.gz"]
    )
    lines = _stderr_lines(capsys)
    assert code == EXIT_NO_INPUT
    assert len(lines) == 1 and "nope.nii.gz" in lines[0]


def test_roi_coords_spheres_mask_is_written(pain_input, tmp_path, capsys):
    out = tmp_path / "out"
    code = _run(
        [
            pain_input,
            out,
            "group",
            *CSALE_ROI,
            "--roi-coords",
            "36,16,4",
            "-36,16,4",
            "--roi-radius",
            "10",
        ]
    )
    assert code == EXIT_OK, capsys.readouterr().err
    mask_file = _roi_mask_file(out)
    assert re.fullmatch(r"studyset-pain_roi-[A-Za-z0-9]+_mask\.nii\.gz", mask_file.name)
    mask = _check_on_template(mask_file)
    img, brain = _template()
    d = np.min([np.linalg.norm(_mm(brain.shape, img.affine) - c, axis=-1) for c in CENTRES], axis=0)
    np.testing.assert_array_equal(mask, (d <= 10.0) & brain)  # voxel centres within 10 mm
    side = json.loads(mask_file.with_name(mask_file.name.replace(".nii.gz", ".json")).read_text())
    assert "36" in json.dumps(side) and "10" in json.dumps(side)
    assert list((out / "studyset-pain").glob("*_meta-csale_stat-z_statmap.nii.gz"))


def test_builtin_cerebellum_roi(pain_input, tmp_path, capsys):
    out = tmp_path / "out"
    code = _run([pain_input, out, "group", *CSALE_ROI, "--roi", "cerebellum"])
    err = capsys.readouterr().err
    if code == 18:  # too few pain experiments with foci in the (dilated) cerebellum
        assert "min-experiments" in err
        return
    assert code == EXIT_OK, err
    mask_file = out / "studyset-pain" / "studyset-pain_roi-cerebellum_mask.nii.gz"
    mask = _check_on_template(mask_file)
    assert 18000 <= mask.sum() <= 20500  # SUIT lobules on the 2 mm grid: ~19,200 voxels
    img, _ = _template()
    xyz = _mm(mask.shape, img.affine)[mask]
    assert (xyz[:, 1] < -20).all() and (xyz[:, 2] < 10).all()  # posterior, inferior
    side = json.loads(mask_file.with_name("studyset-pain_roi-cerebellum_mask.json").read_text())
    assert "SUIT" in json.dumps(side)


# --------------------------------------------------------------------------- OUTPUT_DIR rules


@pytest.mark.parametrize("where", ["same", "inside", "inside-via-symlink"])
def test_output_dir_equal_to_or_inside_input_is_refused(where, pain_input, tmp_path, capsys):
    if where == "same":
        out = pain_input
    elif where == "inside":
        out = pain_input / "derivatives" / "csale"
    else:
        link = tmp_path / "link"
        link.symlink_to(pain_input, target_is_directory=True)
        out = link / "derivatives"
    before = _snapshot(pain_input)

    code = _run([pain_input, out, "group", *ALE_FAST])

    lines = _stderr_lines(capsys)
    assert code == EXIT_CANT_CREATE, lines
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), lines
    assert str(out) in lines[0] and "must not be the input folder or inside it" in lines[0]
    assert _snapshot(pain_input) == before  # nothing created in INPUT_DIR


# --------------------------------------------------------------------------- staging, atomic


def test_commit_refuses_a_staging_folder_emptied_by_another_run(tmp_path):
    """write_atomic re-creates a removed staging folder; commit must not publish the rest."""
    import pandas as pd

    from csale_app.errors import OutputError
    from csale_app.outputs import bids

    out = bids.StudysetOutput(tmp_path, "pain")
    bids.write_table(out.table_path("desc-first_table"), pd.DataFrame({"a": [1]}))
    shutil.rmtree(out.staging)  # e.g. the stale-staging clean-up of another run
    bids.write_table(out.table_path("desc-second_table"), pd.DataFrame({"a": [2]}))
    with pytest.raises(OutputError, match="staging folder was removed"):
        out.commit({"digest": "x"})
    assert not (tmp_path / "studyset-pain").exists()


def test_stale_staging_is_removed_per_studyset_only(tmp_path):
    """A run for one studyset (job arrays: --studyset-label) never removes another's staging."""
    from csale_app.outputs import bids

    old = bids.StudysetOutput(tmp_path, "pain")  # left over by a killed run
    sibling = bids.StudysetOutput(tmp_path, "pain2")  # another job's run, still writing
    assert old.staging.is_dir() and sibling.staging.is_dir()
    assert not list(tmp_path.glob(".staging-studyset-*"))  # not what Pipeline.run() sweeps
    new = bids.StudysetOutput(tmp_path, "pain")
    assert not old.staging.exists() and sibling.staging.is_dir()
    new.commit({"digest": "x"})
    final = tmp_path / "studyset-pain"
    assert sorted(p.name for p in final.iterdir()) == [bids.PROVENANCE]  # no marker left
    sibling.commit({"digest": "y"})
    assert (tmp_path / "studyset-pain2").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studyset-pain", "studyset-pain2"]


def test_atomic_write_of_a_long_name_leaves_only_the_final_file(tmp_path):
    from csale_app.outputs.atomic import write_text

    name = "studyset-" + "a" * 200 + "_meta-csale_stat-z_statmap.json"  # 240 bytes
    assert len(name) < 255
    write_text(tmp_path / name, "{}\n")
    assert [p.name for p in tmp_path.iterdir()] == [name]
