"""A run killed with SIGKILL mid-permutation resumes from its checkpoints, identically."""

import os
import shutil
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

# C-SALE in a sphere ROI keeps its checkpoints (top-K values and permutations) small
ANALYSIS_ARGS = {"ale": ["ale"], "csale": ["csale", "--roi-coords", "38,4,2", "--roi-radius", "20"]}


def _cmd(inp, out, analysis):
    return [
        sys.executable,
        "-m",
        "csale_app",
        str(inp),
        str(out),
        "group",
        "--analyses",
        *ANALYSIS_ARGS[analysis],
        "--n-iters",
        "2500",
        "--nprocs",
        "1",
        "--quiet",
    ]


def _maps(folder):
    return {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


@pytest.mark.parametrize("analysis", ["ale", "csale"])
def test_sigkill_then_resume_gives_identical_maps(tmp_path, pain_json, analysis):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(inp, killed, analysis), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    work = killed / ".csale_work"
    deadline = time.time() + 300
    while time.time() < deadline:
        if list(work.glob("*/chunk-000001.npz")):
            break
        if proc.poll() is not None:
            raise AssertionError(f"run ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("no checkpoint appeared")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "studyset-pain").exists()
    done_before = len(list(work.glob("*/chunk-*.npz")))
    assert 2 <= done_before < 10  # killed mid-run: some chunks done, not all
    resumed = subprocess.run(_cmd(inp, killed, analysis), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    fresh = tmp_path / "fresh"
    assert subprocess.run(_cmd(inp, fresh, analysis), capture_output=True).returncode == 0
    a, b = _maps(killed / "studyset-pain"), _maps(fresh / "studyset-pain")
    assert a.keys() == b.keys() and len(a) > 5
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    null = f"studyset-pain_meta-{analysis}_desc-null_values.tsv"
    null_a = (killed / "studyset-pain" / null).read_text()
    null_b = (fresh / "studyset-pain" / null).read_text()
    assert null_a == null_b
