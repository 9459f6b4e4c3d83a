"""Scale-out benchmark (issue 16): a Neurosynth-size reference database and a MACM over it.

    python benchmarks/bench_scale.py                       # writes the database if needed
    python benchmarks/bench_scale.py --iters 100 --configs nprocs1 nprocs2 dask1 dask2

(1) Database: read + de-duplicate + index the synthetic database
(``benchmarks/synthetic_database.py``: 14,000 experiments, ~500,000 foci, one TSV) with
``csale_app.io.database.load_database`` (what ``Pipeline.load_database`` runs), in a fresh
subprocess: seconds and peak RSS. (2) MACM: the experiments with a focus in an 8 mm sphere,
their whole-brain ALE Monte Carlo FWE null and C-SALE permutation pass (base-rate null of the
whole database, top-K sized for 10,000 iterations at p < 0.001), in permutations per second,
for ``--nprocs 1/2`` (numba threads, one process) and 1/2 Dask workers
(``LocalCluster(processes=True, threads_per_worker=1)``). JIT compilation and the first
chunk on each worker are excluded (a warm-up run first); the chunks are those of the
pipeline (``--chunk`` permutations each). Not a test: timings vary with the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED_MNI = (-42.0, -60.0, -8.0)
SEED_RADIUS = 8.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(db_path: Path):
    from csale_app.io.database import load_database
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask()
    brain = np.asanyarray(img.dataobj) > 0
    t0 = time.perf_counter()
    db = load_database([db_path], img.affine, brain.shape, merge_contrasts=True)
    return img, brain, db, time.perf_counter() - t0


def child_load(db_path: Path) -> None:
    _, _, db, seconds = load(db_path)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak_mb(),
                "n_experiments": db.n_experiments,
                "n_foci": db.n_foci,
            }
        )
    )


def macm_plans(img, brain, db, k_iters: int):
    from csale_app.stats.selection import select_by_seed
    from csale_app.kernels.engine import build_null_plan
    from csale_app.kernels.plan import build_grid, uniform_sampler, weighted_sampler
    from csale_app.stats.ale import kernels_for, observed_ale
    from csale_app.stats.csale import base_rate_map, observed_log, top_k_size

    ijk = np.indices(brain.shape).reshape(3, -1).T
    xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    seed = (np.linalg.norm(xyz - np.array(SEED_MNI), axis=1) <= SEED_RADIUS).reshape(brain.shape)
    selected, _ = select_by_seed(db, seed & brain, None)
    sel = db.subset(selected)
    grid = build_grid(brain)
    vv = float(abs(np.linalg.det(img.affine[:3, :3])))
    table, kid = kernels_for(sel, grid, None, vv)
    obs = observed_ale(sel, grid, table, kid)
    ale_plan = build_null_plan(grid, table, kid, sel.foci_counts(), uniform_sampler(grid), 0)
    rate = base_rate_map(db, grid, None, vv)
    cs_plan = build_null_plan(grid, table, kid, sel.foci_counts(), weighted_sampler(grid, rate), 0)
    return (
        sel,
        grid,
        ale_plan,
        float(obs.threshold_for_p(0.001)),
        cs_plan,
        observed_log(obs.stat),
        top_k_size(0.001, k_iters),
    )


def time_config(config: str, plans, iters: int, chunk: int) -> dict:
    from csale_app.kernels.engine import CPUBackend
    from csale_app.stats.csale import pass1_reducer
    from csale_app.stats.montecarlo import (
        BackendChunk,
        csale_pass1_call,
        fwe_call,
        run_chunked,
        run_chunked_reduce,
    )

    _, _, ale_plan, thr, cs_plan, obs_log, K = plans
    cluster = executor = None
    if config.startswith("dask"):
        from distributed import LocalCluster

        from csale_app.distributed import connect

        cluster = LocalCluster(
            processes=True, n_workers=int(config[4:]), threads_per_worker=1, dashboard_address=None
        )
        executor = connect(cluster.scheduler_address)
        backend = CPUBackend(1)
    else:
        backend = CPUBackend(int(config[6:]))
    ale = BackendChunk(fwe_call, backend, ale_plan, (thr,))
    cs = BackendChunk(csale_pass1_call, backend, cs_plan, (obs_log, K))
    n_warm = 2 * int(config[4:]) if executor else 1
    out = {"config": config}
    for name, compute, reduce in (("ale", ale, None), ("csale", cs, pass1_reducer(K))):
        # warm-up: JIT and the plan on every worker
        if reduce is None:
            run_chunked(n_warm, 1, compute, executor=executor)
        else:
            run_chunked_reduce(n_warm, 1, compute, reduce, executor=executor)
        t0 = time.perf_counter()
        if reduce is None:
            run_chunked(iters, chunk, compute, executor=executor)
        else:
            run_chunked_reduce(iters, chunk, compute, reduce, executor=executor)
        out[f"{name}_it_s"] = iters / (time.perf_counter() - t0)
    if cluster is not None:
        from csale_app.distributed import disconnect

        disconnect(cluster.scheduler_address)
        cluster.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, default=Path("/tmp/csale_bench/neurosynth_size.tsv"))
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--configs", nargs="+", default=["nprocs1", "nprocs2", "dask1", "dask2"])
    ap.add_argument("--child-load", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_load:
        child_load(args.db)
        return
    if not args.db.exists():
        from synthetic_database import write_database

        write_database(args.db)
    print(f"# {platform.machine()}, {platform.python_version()}, database {args.db}")
    res = subprocess.run(
        [sys.executable, __file__, "--child-load", "--db", str(args.db)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(res.stdout.strip().splitlines()[-1])
    print(
        f"database: {info['n_experiments']} experiments, {info['n_foci']} foci: read + "
        f"de-duplicate + index {info['seconds']:.2f} s, peak RSS {info['peak_mb']:.0f} MB"
    )
    img, brain, db, _ = load(args.db)
    plans = macm_plans(img, brain, db, 10_000)
    print(
        f"MACM: {plans[0].n_experiments} experiments ({plans[0].n_foci} foci) in an "
        f"{SEED_RADIUS:g} mm sphere at {SEED_MNI}; whole brain {plans[1].n_mask} voxels; "
        f"K = {plans[6]}"
    )
    print("| configuration | ALE FWE null it/s | C-SALE pass it/s |")
    print("|---|---|---|")
    for config in args.configs:
        r = time_config(config, plans, args.iters, args.chunk)
        print(f"| {config} | {r['ale_it_s']:.2f} | {r['csale_it_s']:.2f} |", flush=True)
    print(f"peak RSS of this process (database + MACM, client side): {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
