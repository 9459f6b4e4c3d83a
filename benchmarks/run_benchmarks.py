"""Side-by-side benchmarks: csale_app's engine vs NiMARE 0.22 on the same data, one run.

    python benchmarks/run_benchmarks.py                      # all cases, --nprocs 1 and 2
    python benchmarks/run_benchmarks.py --case pain --nprocs 2 --iters 10000 --nimare-iters 10000
    python benchmarks/run_benchmarks.py --whole --nprocs 2 --iters 10000   # whole commands, pain

Cases: (1) pain: ALE + Monte Carlo FWE, whole brain, 21 experiments; (2) nback: the same on
the n-back studyset (500 contrasts, no merging, 6,228 foci); (3) csale: C-SALE with
cluster-level FWE (permutation pass + cluster null) in the cerebellum vs NiMARE's
deterministic SCALE on the same experiments. Each tool runs at least --min-seconds (default 20 s) unless --iters/--nimare-iters
fix the counts; rates are iterations per second of the permutation phase (JIT warm-up
excluded). Peak memory is measured in a fresh subprocess per tool and case (ru_maxrss).
``--whole`` (SPEC 8, next floors): the whole job on pain as a user runs it, each in a fresh
process, start to exit: ``csale-app IN OUT group --analyses ale`` (imports, numba cache load,
permutations, tables, maps, report) against a Python process that imports NiMARE, loads the
same file as a ``Dataset``, runs ``ALE().fit`` and ``FWECorrector(method="montecarlo")`` and
saves the maps (NiMARE writes no report or tables). Run once before to warm numba's cache.
Not a test: timings vary with the machine; run it side by side, on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def load_case(case: str):
    from nimare.utils import get_resource_path

    from csale_app.io.experiments import build_experiments, restrict_to_mask
    from csale_app.io.readers import read_studyset
    from csale_app.io.roi import builtin_roi, dilate
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask()
    brain = np.asanyarray(img.dataobj) > 0
    base = Path(get_resource_path())
    if case == "pain":
        foci = read_studyset(base / "nidm_pain_dset.json")
    else:
        foci = read_studyset(
            base / "nback_vs_flanker_studyset_2026-07",
            where={"comparison_task": "n-back"},
            unknown_space="mni",
        )
        foci = foci[foci["sample_size"] > 0]
    exps = build_experiments(foci, img.affine, brain.shape, merge_contrasts=False)
    mask = brain
    if case == "csale":
        roi = builtin_roi("cerebellum", img, brain)
        mask = dilate(roi.mask, 6.0, 2.0, brain)
        db = exps
        exps = restrict_to_mask(exps, mask)
        return img, mask, exps, db
    return img, mask, exps, None


def _time_until(run, n: int, min_seconds: float, fixed: int | None) -> dict:
    """Time ``run(n)``, growing n until one call lasts ``min_seconds`` (unless n is fixed)."""
    while True:
        t0 = time.perf_counter()
        run(n)
        dt = time.perf_counter() - t0
        if fixed or dt >= min_seconds:
            return {"iters": n, "seconds": dt, "it_per_s": n / dt}
        n = int(n * max(2.0, 1.2 * min_seconds / max(dt, 1e-3)))


def time_ours(case: str, nprocs: int, min_seconds: float, iters: int | None) -> dict:
    """Time the permutation phase only (as NiMARE's FWECorrector / SCALE loop is timed):
    the observed map, approximate null and plan are built once, before the clock starts."""
    from csale_app.kernels.cpu.csale import cluster_null_sizes
    from csale_app.kernels.engine import CPUBackend, build_null_plan
    from csale_app.kernels.plan import build_grid, pool_sampler, uniform_sampler
    from csale_app.stats.ale import kernels_for, observed_ale
    from csale_app.stats.csale import observed_log, top_k_size

    img, mask, exps, db = load_case(case)
    grid = build_grid(mask)
    backend = CPUBackend(nprocs)
    table, kid = kernels_for(exps, grid, None, 8.0)
    obs = observed_ale(exps, grid, table, kid)
    if case == "csale":
        pool = db.ijk[mask[tuple(db.ijk.T)]]
        plan = build_null_plan(grid, table, kid, exps.foci_counts(), pool_sampler(grid, pool), 1)
        obs_log = observed_log(obs.stat)

        def run(n):
            K = top_k_size(0.001, max(n, 2))
            p1 = backend.csale_pass1_chunk(plan, 0, n, obs_log, K)
            cluster_null_sizes(
                p1["top"], p1["top_id"], 0.001 * (n - 1), n, grid.forward_neighbours, nprocs
            )
    else:
        plan = build_null_plan(grid, table, kid, exps.foci_counts(), uniform_sampler(grid), 1)
        thresh = obs.threshold_for_p(0.001)

        def run(n):
            for start in range(0, n, 500):
                backend.fwe_chunk(plan, start, min(500, n - start), thresh)

    run(4)  # JIT warm-up
    return {
        **_time_until(run, iters or 50, min_seconds, iters),
        "experiments": exps.n_experiments,
        "foci": exps.n_foci,
    }


def nimare_dataset(exps, mask_img=None):
    from nimare.dataset import Dataset

    data = {}
    for e in range(exps.n_experiments):
        xyz = exps.xyz_mni[exps.focus_start[e] : exps.focus_start[e + 1]]
        data[f"s{e}"] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": "MNI",
                        "x": xyz[:, 0].tolist(),
                        "y": xyz[:, 1].tolist(),
                        "z": xyz[:, 2].tolist(),
                    },
                    "metadata": {"sample_sizes": [float(exps.sample_size[e])]},
                }
            }
        }
    return Dataset(data, mask=mask_img) if mask_img is not None else Dataset(data)


def time_nimare(case: str, nprocs: int, min_seconds: float, iters: int | None) -> dict:
    import nibabel as nib
    from nimare.correct import FWECorrector
    from nimare.meta.cbma.ale import ALE, SCALE

    img, mask, exps, db = load_case(case)
    warnings.simplefilter("ignore")
    if case == "csale":
        mask_img = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
        dset = nimare_dataset(exps, mask_img)
        pool = db.ijk[mask[tuple(db.ijk.T)]]
        pool_xyz = pool @ img.affine[:3, :3].T + img.affine[:3, 3]

        def run(n):
            SCALE(xyz=pool_xyz, n_iters=n, mask=mask_img, n_cores=nprocs, random_state=1).fit(dset)
    else:
        dset = nimare_dataset(exps)
        result = ALE().fit(dset)

        def run(n):
            FWECorrector(
                method="montecarlo", n_iters=n, voxel_thresh=0.001, n_cores=nprocs
            ).transform(result)

    run(5)
    return _time_until(run, iters or 20, min_seconds, iters)


NIMARE_WHOLE = """
import sys, warnings
warnings.simplefilter("ignore")
from nimare.correct import FWECorrector
from nimare.dataset import Dataset
from nimare.meta.cbma.ale import ALE
from nimare.utils import get_resource_path
n_iters, n_cores, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dset = Dataset(get_resource_path() + "/nidm_pain_dset.json")
result = ALE().fit(dset)
corrected = FWECorrector(method="montecarlo", n_iters=n_iters, voxel_thresh=0.001,
                         n_cores=n_cores).transform(result)
corrected.save_maps(output_dir=out)
"""


def whole_commands(iters: int, nprocs: int) -> None:
    import shutil
    import tempfile

    from nimare.utils import get_resource_path

    base = Path(tempfile.mkdtemp(prefix="csale_whole_"))
    try:
        inp = base / "in"
        inp.mkdir()
        shutil.copy(Path(get_resource_path()) / "nidm_pain_dset.json", inp / "pain.json")
        app = Path(sys.executable).parent / "csale-app"
        cmds = {
            "ours": [
                str(app),
                str(inp),
                str(base / "ours"),
                "group",
                "--analyses",
                "ale",
                "--n-iters",
                str(iters),
                "--nprocs",
                str(nprocs),
                "--quiet",
            ],
            "nimare": [
                sys.executable,
                "-c",
                NIMARE_WHOLE,
                str(iters),
                str(nprocs),
                str(base / "nimare"),
            ],
        }
        wall = {}
        for tool, cmd in cmds.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall[tool] = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{tool}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        print(
            "| whole command, pain ALE + FWE | nprocs | iterations | csale_app | NiMARE | ratio |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| start to exit | {nprocs} | {iters} | {wall['ours']:.1f} s | "
            f"{wall['nimare']:.1f} s | {wall['nimare'] / wall['ours']:.1f}x |"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def child(args) -> None:
    fn = time_ours if args.tool == "ours" else time_nimare
    out = fn(args.case, args.nprocs, args.min_seconds, args.iters)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--case", choices=["pain", "nback", "csale"], nargs="+", default=["pain", "nback", "csale"]
    )
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--min-seconds", type=float, default=20.0)
    ap.add_argument("--iters", type=int, default=None, help="fix csale_app's iterations")
    ap.add_argument("--nimare-iters", type=int, default=None, help="fix NiMARE's iterations")
    ap.add_argument(
        "--whole",
        action="store_true",
        help="time the whole commands on pain (start to exit), not the null alone",
    )
    ap.add_argument("--tool", choices=["ours", "nimare"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.whole:
        for n in args.nprocs:
            whole_commands(args.iters or 10000, n)
        return
    if args.tool:
        args.case, args.nprocs = args.case[0], args.nprocs[0]
        args.iters = args.iters if args.tool == "ours" else args.nimare_iters
        return child(args)
    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
        f"python {platform.python_version()}"
    )
    print(
        "| case | nprocs | csale_app it/s | NiMARE it/s | ratio | csale_app peak MB | "
        "NiMARE peak MB | iterations (ours / NiMARE) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in args.case:
        for n in args.nprocs:
            res = {}
            for tool in ("ours", "nimare"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--tool",
                    tool,
                    "--case",
                    case,
                    "--nprocs",
                    str(n),
                    "--min-seconds",
                    str(args.min_seconds),
                ]
                if args.iters:
                    cmd += ["--iters", str(args.iters)]
                if args.nimare_iters:
                    cmd += ["--nimare-iters", str(args.nimare_iters)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                res[tool] = json.loads(proc.stdout.strip().splitlines()[-1])
            o, r = res["ours"], res["nimare"]
            print(
                f"| {case} | {n} | {o['it_per_s']:.1f} | {r['it_per_s']:.2f} | "
                f"{o['it_per_s'] / r['it_per_s']:.1f}x | {o['peak_mb']:.0f} | "
                f"{r['peak_mb']:.0f} | {o['iters']} / {r['iters']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
