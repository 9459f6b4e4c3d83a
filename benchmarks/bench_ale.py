"""Side-by-side benchmark: csale_app vs NiMARE 0.22, ALE + Monte Carlo FWE, one run.

    python benchmarks/bench_ale.py --dataset pain --n-iters 10000 --nprocs 2

Prints iterations per second of each tool, the ratio and peak memory (ru_maxrss of this
process after each tool; run each tool alone with --only for separate peaks). Not a test.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from pathlib import Path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(dataset: str):
    from nimare.utils import get_resource_path

    from csale_app.io.readers import read_studyset

    base = Path(get_resource_path())
    if dataset == "pain":
        return read_studyset(base / "nidm_pain_dset.json"), base / "nidm_pain_dset.json"
    foci = read_studyset(base / "nback_vs_flanker_studyset_2026-07",
                         where={"comparison_task": "n-back"}, unknown_space="mni")
    foci = foci[foci["sample_size"] > 0]
    return foci, None


def run_ours(foci, n_iters, nprocs):
    from csale_app.io.experiments import build_experiments
    from csale_app.io.templates import load_brain_mask
    from csale_app.kernels.engine import CPUBackend
    from csale_app.kernels.plan import build_grid
    from csale_app.stats.ale_analysis import run_ale

    import numpy as np

    img = load_brain_mask()
    mask = np.asanyarray(img.dataobj) > 0
    exps = build_experiments(foci, img.affine, mask.shape, merge_contrasts=False)
    grid = build_grid(mask)
    backend = CPUBackend(nprocs)
    run_ale(exps, grid, img.affine, n_iters=20, voxel_thresh=0.001, cluster_alpha=0.05,
            kernel_fwhm=None, seed=1, backend=backend)  # JIT warm-up, not timed
    t0 = time.perf_counter()
    run_ale(exps, grid, img.affine, n_iters=n_iters, voxel_thresh=0.001, cluster_alpha=0.05,
            kernel_fwhm=None, seed=1, backend=backend)
    return time.perf_counter() - t0, exps.n_experiments


def run_nimare(foci, n_iters, nprocs):
    import numpy as np
    from nimare.correct import FWECorrector
    from nimare.dataset import Dataset
    from nimare.meta.cbma.ale import ALE

    ids = (foci["study_id"] + "-" + foci["contrast_id"]).to_numpy()
    data = {}
    for i, (sid, grp) in enumerate(foci.assign(id=ids).groupby("id", sort=False)):
        data[f"s{i}"] = {"contrasts": {"1": {
            "coords": {"space": "MNI", "x": grp.x.tolist(), "y": grp.y.tolist(),
                       "z": grp.z.tolist()},
            "metadata": {"sample_sizes": [float(grp.sample_size.iloc[0])]}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(data)
        result = ALE().fit(dset)
        t0 = time.perf_counter()
        FWECorrector(method="montecarlo", n_iters=n_iters, voxel_thresh=0.001,
                     n_cores=nprocs).transform(result)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["pain", "nback"], default="pain")
    ap.add_argument("--n-iters", type=int, default=10000)
    ap.add_argument("--nimare-iters", type=int, default=None,
                    help="NiMARE iterations (default: same); its rate is what is compared")
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--only", choices=["ours", "nimare"], default=None)
    a = ap.parse_args()
    foci, _ = load(a.dataset)
    rows = []
    if a.only in (None, "ours"):
        t, n_exp = run_ours(foci, a.n_iters, a.nprocs)
        rows.append(("csale_app", a.n_iters, t, peak_mb()))
    if a.only in (None, "nimare"):
        n = a.nimare_iters or a.n_iters
        t = run_nimare(foci, n, a.nprocs)
        rows.append(("NiMARE 0.22", n, t, peak_mb()))
    print(f"dataset={a.dataset} nprocs={a.nprocs}")
    print(f"{'tool':<12} {'iters':>7} {'seconds':>9} {'it/s':>8} {'peak MB':>8}")
    for name, n, t, mb in rows:
        print(f"{name:<12} {n:>7} {t:>9.1f} {n / t:>8.1f} {mb:>8.0f}")
    if len(rows) == 2:
        print(f"ratio (csale_app / NiMARE it/s): {(rows[0][1] / rows[0][2]) / (rows[1][1] / rows[1][2]):.1f}x")


if __name__ == "__main__":
    main()
