"""One Neurosynth coactivation on a Neurosynth-size database (issue 22, item 6), and NiMARE.

    python benchmarks/bench_mkdachi2.py [--experiments 14400] [--nimare-experiments 14400]

Database: ``benchmarks/synthetic_database.py``'s generator (fixed seed), every contrast its
own experiment (``--no-merge-contrasts``), so 14,400 experiments and about 520,000 foci, as
Neurosynth v7 (14,371 studies, 507,891 peaks). One coactivation = what a MACM's MKDA
chi-square does: select the experiments with a focus within 6 mm of a seed point (and,
separately, the Neurosynth coverage rule on the same 6 mm sphere as an image seed, > 0 =
any overlap), count active experiments of both groups per voxel of the whole-brain mask
(6 mm spheres), uniformity + association tests, posterior probabilities, FDR at q = 0.01.

Each measurement runs in its own subprocess (NUMBA_NUM_THREADS=2, the machine's two cores):
time of the second call (the first compiles or loads the numba cache, reported too) and the
peak RSS of the process, database included. NiMARE 0.22.1: ``get_studies_by_coordinate`` ->
``slice`` x 2 -> ``MKDAChi2(kernel__r=6).fit`` -> ``FDRCorrector(method="indep")``, on the
same experiments (the Dataset is built once, outside the timing). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED_MNI = (-42.0, -60.0, -8.0)  # where synthetic_database puts no special weight
RADIUS_MM = 6.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def database(n_experiments: int):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_database import synthetic_foci
    from csale_app.io.experiments import build_experiments
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask()
    brain = np.asanyarray(img.dataobj) > 0
    foci = synthetic_foci(n_experiments)
    foci["source_file"], foci["source_line"] = "synthetic", np.arange(len(foci)) + 2
    db = build_experiments(foci, img.affine, brain.shape, merge_contrasts=False)
    return img, brain, db


def coactivation(img, brain, db, rule: str) -> dict:
    """Selection + uniformity + association + FDR, timed per step."""
    from csale_app.stats.selection import select_by_points, select_by_seed
    from csale_app.kernels.spheres import active_counts, sphere_offsets
    from csale_app.stats.mkdachi2 import mkdachi2

    offsets = sphere_offsets(RADIUS_MM, img.affine)
    t = {"start": time.perf_counter()}
    cpu0 = time.process_time()
    if rule == "point":
        selected, _ = select_by_points(db, [SEED_MNI], RADIUS_MM)
    else:
        ijk = np.indices(brain.shape).reshape(3, -1).T
        xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
        seed = (np.linalg.norm(xyz - SEED_MNI, axis=1) <= RADIUS_MM).reshape(brain.shape)
        t["start"] = time.perf_counter()  # the seed image is an input, not part of the work
        cpu0 = time.process_time()
        selected, _ = select_by_seed(db, seed & brain, 0.0, offsets)
    t["selection"] = time.perf_counter()
    counts = active_counts(db.ijk, db.focus_start, np.where(selected, 0, 1), 2, brain, offsets)
    t["counts"] = time.perf_counter()
    res = mkdachi2(
        counts[0], counts[1], int(selected.sum()), int((~selected).sum()), prior=0.5, q=0.01
    )
    t["tests_fdr"] = time.perf_counter()
    steps = list(t)
    out = {f"{b}_s": round(t[b] - t[a], 3) for a, b in zip(steps, steps[1:])}
    out.update(
        total_s=round(t["tests_fdr"] - t["start"], 3),
        total_cpu_s=round(time.process_time() - cpu0, 3),
        n_selected=int(selected.sum()),
        n_fdr=res.n_survivors,
    )
    return out


def child_ours(n_experiments: int, rule: str) -> None:
    t0 = time.perf_counter()
    img, brain, db = database(n_experiments)
    build = time.perf_counter() - t0
    first = coactivation(img, brain, db, rule)
    second = coactivation(img, brain, db, rule)
    print(
        json.dumps(
            {
                "tool": "csale_app",
                "rule": rule,
                "n_experiments": db.n_experiments,
                "n_foci": db.n_foci,
                "database_build_s": round(build, 2),
                "first_call": first,
                **second,
                "peak_rss_mb": round(peak_mb()),
            }
        )
    )


def nimare_dataset(db, img):
    from nimare.dataset import Dataset

    data = {}
    for e, eid in enumerate(db.ids):
        xyz = db.xyz_mni[db.focus_start[e] : db.focus_start[e + 1]]
        data[eid] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": "MNI",
                        "x": xyz[:, 0].tolist(),
                        "y": xyz[:, 1].tolist(),
                        "z": xyz[:, 2].tolist(),
                    }
                }
            }
        }
    return Dataset(data)


def child_nimare(n_experiments: int) -> None:
    from nimare.correct import FDRCorrector
    from nimare.meta.cbma.mkda import MKDAChi2

    warnings.simplefilter("ignore")
    img, brain, db = database(n_experiments)
    t0 = time.perf_counter()
    dset = nimare_dataset(db, img)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = dset.get_studies_by_coordinate([list(SEED_MNI)], r=RADIUS_MM)
    rest = sorted(set(dset.ids) - set(ids))
    d1, d2 = dset.slice(ids), dset.slice(rest)
    t1 = time.perf_counter()
    res = MKDAChi2(kernel__r=6).fit(d1, d2)
    t2 = time.perf_counter()
    cres = FDRCorrector(method="indep", alpha=0.01).transform(res)
    t3 = time.perf_counter()
    n_fdr = int(
        (
            cres.get_map(
                "p_desc-association_level-voxel_corr-FDR_method-indep", return_type="array"
            )
            <= 0.01
        ).sum()
    )
    print(
        json.dumps(
            {
                "tool": "nimare",
                "n_experiments": len(dset.ids),
                "dataset_build_s": round(build, 2),
                "selection_s": round(t1 - t0, 3),
                "fit_s": round(t2 - t1, 3),
                "fdr_s": round(t3 - t2, 3),
                "total_s": round(t3 - t0, 3),
                "n_selected": len(ids),
                "n_fdr_association_incl_inactive": n_fdr,
                "peak_rss_mb": round(peak_mb()),
            }
        )
    )


def run_child(args: list[str], timeout: float) -> dict:
    env = {
        **os.environ,
        "NUMBA_NUM_THREADS": "2",
        "OMP_NUM_THREADS": "2",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    try:
        out = subprocess.run(
            [sys.executable, __file__, *args],
            env=env,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
    except subprocess.TimeoutExpired:
        return {"args": args, "error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"args": args, "error": f"exit {out.returncode}: {out.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiments", type=int, default=14_400)
    p.add_argument("--nimare-experiments", type=int, nargs="*", default=[14_400])
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--child", choices=["ours", "nimare"])
    p.add_argument("--rule", default="point", choices=["point", "coverage"])
    a = p.parse_args(argv)
    if a.child == "ours":
        child_ours(a.experiments, a.rule)
        return 0
    if a.child == "nimare":
        child_nimare(a.experiments)
        return 0
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "loadavg": [round(x, 1) for x in load],
            }
        )
    )
    for rule in ("point", "coverage"):
        print(
            json.dumps(
                run_child(
                    ["--child", "ours", "--experiments", str(a.experiments), "--rule", rule],
                    a.timeout,
                )
            )
        )
    for n in a.nimare_experiments:
        print(json.dumps(run_child(["--child", "nimare", "--experiments", str(n)], a.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
