"""End to end: the CLI on numba's simulated CUDA device writes the CPU's maps.

``NUMBA_ENABLE_CUDASIM`` must be set before numba.cuda is imported, so the simulated run is
``python -m csale_app`` in a subprocess (with the simulator fixes of test_cuda_sim's
``SIM_PREAMBLE`` applied first); the CPU run of the same command runs meanwhile in this
process. The problem is tiny (4 experiments near the PCC, a 6 mm ROI sphere dilated by
2 mm: ~260 analysis voxels, 20 permutations), and the thresholds are loose so that every
thresholded map has voxels to compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from csale_app.cli.run import main
from tests.kernels.test_cuda_sim import SIM_PREAMBLE

REPO = Path(__file__).resolve().parents[2]

FOCI = {
    "s1": [(0, -52, 26), (4, -50, 28)],
    "s2": [(-2, -54, 24), (2, -56, 26), (0, -50, 30)],
    "s3": [(-4, -52, 26), (2, -48, 24)],
    "s4": [(0, -54, 28), (-2, -50, 22), (4, -52, 24)],
}

ARGS = [
    "group",
    "--analyses",
    "ale",
    "csale",
    "--n-iters",
    "20",
    "--min-experiments",
    "3",
    "--roi-coords",
    "0,-52,26",
    "--roi-radius",
    "6",
    "--roi-dilation-mm",
    "2",
    "--voxel-thresh",
    "0.1",
    "--cluster-alpha",
    "0.5",
    "--min-cluster-size",
    "5",
    "--nprocs",
    "1",
    "--quiet",
]

#: ``python -m csale_app`` after the simulator fixes
_RUN_MODULE = (
    SIM_PREAMBLE
    + r"""
import runpy
sys.argv[0] = "csale_app"
runpy.run_module("csale_app", run_name="__main__", alter_sys=True)
"""
)


def _write_input(folder: Path) -> Path:
    folder.mkdir()
    rows = [(s, "c1", x, y, z, "MNI", 20) for s, foci in FOCI.items() for x, y, z in foci]
    pd.DataFrame(
        rows, columns=["study_id", "contrast_id", "x", "y", "z", "space", "sample_size"]
    ).to_csv(folder / "pcc.tsv", sep="\t", index=False)
    return folder


def test_cli_on_simulated_gpu_writes_the_cpu_maps(tmp_path):
    inp = _write_input(tmp_path / "in")
    out_gpu, out_cpu = tmp_path / "gpu", tmp_path / "cpu"
    env = {
        **os.environ,
        "NUMBA_ENABLE_CUDASIM": "1",
        "CSALE_ALLOW_CUDASIM": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _RUN_MODULE,
            str(inp),
            str(out_gpu),
            *ARGS,
            "--device",
            "cuda",
            "--batch-size",
            "8",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert main([str(inp), str(out_cpu), *ARGS, "--device", "cpu"]) == 0
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    seconds = time.time() - t0
    assert proc.returncode == 0, stderr[-4000:]

    # the simulated device really ran (the log records the compute device)
    logs = "\n".join(
        p.read_text(errors="replace") for p in (out_gpu / "logs").rglob("*") if p.is_file()
    )
    assert "numba CUDA simulator" in logs, logs[-2000:]

    cpu_maps = sorted((out_cpu / "studyset-pcc").glob("*_statmap.nii.gz"))
    gpu_maps = sorted((out_gpu / "studyset-pcc").glob("*_statmap.nii.gz"))
    assert [p.name for p in gpu_maps] == [p.name for p in cpu_maps]
    names = [p.name for p in cpu_maps]
    assert any("meta-ale_stat-z_desc-thresholded" in n for n in names)
    assert any("meta-csale_stat-z_desc-thresholded" in n for n in names)
    for c, g in zip(cpu_maps, gpu_maps):
        a = np.asanyarray(nib.load(c).dataobj)
        b = np.asanyarray(nib.load(g).dataobj)
        assert a.shape == b.shape, c.name
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=0, err_msg=c.name)
        if "thresholded" in c.name:
            assert np.count_nonzero(a) > 0, f"{c.name}: empty, the comparison proves little"

    # the null distributions themselves (per-permutation max ALE / cluster sizes)
    for meta in ("ale", "csale"):
        name = f"studyset-pcc_meta-{meta}_desc-null_values.tsv"
        a = pd.read_csv(out_cpu / "studyset-pcc" / name, sep="\t")
        b = pd.read_csv(out_gpu / "studyset-pcc" / name, sep="\t")
        pd.testing.assert_frame_equal(b, a, check_exact=False, rtol=1e-6)
    print(f"simulated-device CLI run and CPU run: {seconds:.1f} s")
