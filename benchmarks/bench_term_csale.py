"""C-SALE of one term studyset in the cerebellum against a Neurosynth-size base rate, whole
command, side by side with NiMARE's SCALE on the same experiments.

    python benchmarks/bench_term_csale.py FILESET_DIR [--iters 10000] [--nimare-iters 100]

FILESET_DIR is a synthetic Neurosynth v7 file set (``benchmarks/synthetic_neurosynth.py``
writes one there if it is missing). Ours: ``csale-app EMPTY_INPUT OUT group --analyses csale
--database FILESET_DIR --term "working memory" --default-sample-size 20 --roi cerebellum``,
start to exit in a fresh process (reading 14,400 studies, the base rate over 500,000 foci,
the null with cluster-level FWE, maps, tables, report), with its peak memory; the null's
own rate comes from the run log. NiMARE 0.22: ``SCALE`` (deterministic base rate, no
cluster FWE) on the same term experiments restricted to the same analysis mask (the
cerebellum dilated by 6 mm), with the database foci in that mask as its pool, at
``--nimare-iters`` (its permutation loop is linear in the count, so the rate carries over).
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TERM = "working memory"

NIMARE = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import nibabel as nib, numpy as np, pandas as pd
from csale_app.io.database import load_database
from csale_app.io.experiments import build_experiments, restrict_to_mask
from csale_app.io.roi import builtin_roi, dilate
from csale_app.io.templates import load_brain_mask
from nimare.dataset import Dataset
from nimare.meta.cbma.ale import SCALE
fileset, foci_tsv, n_iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
img = load_brain_mask(); brain = np.asanyarray(img.dataobj) > 0
mask = dilate(builtin_roi("cerebellum", img, brain).mask, 6.0, 2.0, brain)
foci = pd.read_csv(foci_tsv, sep="\t")
exps = restrict_to_mask(build_experiments(foci, img.affine, brain.shape), mask)
db = load_database([fileset], img.affine, brain.shape, default_sample_size=20)
pool = db.ijk[mask[tuple(db.ijk.T)]]
pool_xyz = pool @ img.affine[:3, :3].T + img.affine[:3, 3]
data = {}
for e in range(exps.n_experiments):
    xyz = exps.xyz_mni[exps.focus_start[e]:exps.focus_start[e + 1]]
    data[f"s{e}"] = {"contrasts": {"1": {"coords": {"space": "MNI", "x": xyz[:, 0].tolist(),
        "y": xyz[:, 1].tolist(), "z": xyz[:, 2].tolist()},
        "metadata": {"sample_sizes": [float(exps.sample_size[e])]}}}}
mask_img = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
dset = Dataset(data, mask=mask_img)
SCALE(xyz=pool_xyz, n_iters=5, mask=mask_img, n_cores=2, random_state=1).fit(dset)
t = time.perf_counter()
SCALE(xyz=pool_xyz, n_iters=n_iters, mask=mask_img, n_cores=2, random_state=1).fit(dset)
dt = time.perf_counter() - t
print(json.dumps({"nimare_experiments": exps.n_experiments, "nimare_pool_foci": len(pool),
                  "nimare_iters": n_iters, "nimare_seconds": round(dt, 2),
                  "nimare_it_per_s": round(n_iters / dt, 2)}))
"""


def ours(fileset: Path, iters: int, work: Path) -> dict:
    inp, out = work / "in", work / "out"
    inp.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "csale_app",
        str(inp),
        str(out),
        "group",
        "--analyses",
        "csale",
        "--database",
        str(fileset),
        "--term",
        TERM,
        "--default-sample-size",
        "20",
        "--roi",
        "cerebellum",
        "--n-iters",
        str(iters),
        "--nprocs",
        "2",
        "--quiet",
        "--overwrite",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    log = "\n".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))
    null = re.search(r"C-SALE null: (\d+) permutations in ([\d.]+) s \(([\d.]+) it/s\)", log)
    folder = next(out.glob("studyset-term*"))
    foci = next(folder.glob("*_desc-input_foci.tsv"))
    return {
        "term": TERM,
        "iters": iters,
        "whole_command_s": round(wall, 1),
        "peak_rss_mb": round(max(peak, before) / 1024),
        "null_s": float(null[2]) if null else None,
        "null_it_per_s": float(null[3]) if null else None,
        "foci_tsv": str(foci),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fileset", type=Path)
    ap.add_argument("--iters", type=int, default=10_000)
    ap.add_argument("--nimare-iters", type=int, default=100)
    args = ap.parse_args(argv)
    if not any(args.fileset.glob("data-neurosynth_version-7_coordinates.tsv.gz")):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "synthetic_neurosynth.py"),
                str(args.fileset),
            ],
            check=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        result = ours(args.fileset, args.iters, Path(tmp))
        if args.nimare_iters:
            env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    NIMARE,
                    str(args.fileset),
                    result["foci_tsv"],
                    str(args.nimare_iters),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            result.update(json.loads(out.stdout.strip().splitlines()[-1]))
            if result.get("null_it_per_s"):
                result["null_ratio"] = round(result["null_it_per_s"] / result["nimare_it_per_s"], 1)
    result.pop("foci_tsv")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
