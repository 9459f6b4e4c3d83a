"""GPU benchmark: the CUDA backend's permutation passes on the n-back studyset.

    python benchmarks/bench_gpu.py                        # 10,000 iterations, batch auto
    python benchmarks/bench_gpu.py --iters 2000 --batch-size 1024 --chunk-sizes 250 2000

Cases (500 n-back contrasts of NiMARE's nback_vs_flanker studyset, sample size > 0, no
merging): (1) ALE: Monte Carlo FWE null (``fwe_chunk``: max ALE, max cluster size and mass)
over the whole-brain mask; (2) C-SALE: the permutation pass (``csale_pass1_chunk``:
counts, top-K values and permutations) and the cluster-level FWE null read off it, in the
built-in cerebellum ROI dilated by 6 mm, base-rate null from all n-back experiments. The passes run in chunks of permutations
as in the pipeline (``Settings.chunk_size``; the GPU batch is at most one chunk), and also
as one chunk, so that the cost of the pipeline's chunking shows. Kernel compilation is
excluded (a short warm-up first). Before timing, the first ``--check`` permutations are
compared with the CPU backend (they must be equal). Without a usable NVIDIA GPU the script
says so and exits 0. Not a test: timings vary with the machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

VOXEL_THRESH = 0.001


def load_nback():
    from nimare.utils import get_resource_path

    from csale_app.io.experiments import build_experiments
    from csale_app.io.readers import read_studyset
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask()
    brain = np.asanyarray(img.dataobj) > 0
    foci = read_studyset(
        Path(get_resource_path()) / "nback_vs_flanker_studyset_2026-07",
        where={"comparison_task": "n-back"},
        unknown_space="mni",
    )
    foci = foci[foci["sample_size"] > 0]
    exps = build_experiments(foci, img.affine, brain.shape, merge_contrasts=False)
    return img, brain, exps


def ale_case(img, brain, exps, seed):
    """(plan, ale_thresh) of the whole-brain ALE Monte Carlo FWE null."""
    from csale_app.kernels.engine import build_null_plan
    from csale_app.kernels.plan import build_grid, uniform_sampler
    from csale_app.stats.ale import kernels_for, observed_ale

    grid = build_grid(brain)
    vv = float(abs(np.linalg.det(img.affine[:3, :3])))
    table, kid = kernels_for(exps, grid, None, vv)
    obs = observed_ale(exps, grid, table, kid)
    plan = build_null_plan(grid, table, kid, exps.foci_counts(), uniform_sampler(grid), seed)
    return plan, float(obs.threshold_for_p(VOXEL_THRESH)), exps


def csale_case(img, brain, db, seed, dilation_mm):
    """(plan, obs_log, experiments) of C-SALE in the dilated cerebellum ROI."""
    from csale_app.io.experiments import restrict_to_mask
    from csale_app.io.roi import builtin_roi, dilate
    from csale_app.kernels.engine import build_null_plan
    from csale_app.kernels.plan import build_grid, weighted_sampler
    from csale_app.stats.ale import kernels_for, observed_ale
    from csale_app.stats.csale import base_rate_map, observed_log

    roi = builtin_roi("cerebellum", img, brain)
    mask = dilate(roi.mask, dilation_mm, 2.0, brain)
    exps = restrict_to_mask(db, mask)
    grid = build_grid(mask)
    vv = float(abs(np.linalg.det(img.affine[:3, :3])))
    table, kid = kernels_for(exps, grid, None, vv)
    obs = observed_ale(exps, grid, table, kid)
    rate = base_rate_map(db, grid, None, vv)
    plan = build_null_plan(grid, table, kid, exps.foci_counts(), weighted_sampler(grid, rate), seed)
    return plan, observed_log(obs.stat), exps


def chunks(n, size):
    return [(s, min(size, n - s)) for s in range(0, n, size)]


def run_ale(backend, plan, thresh, n, chunk):
    parts = [backend.fwe_chunk(plan, s, c, thresh) for s, c in chunks(n, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_csale(backend, plan, obs_log, n, chunk):
    """The permutation pass and the cluster null as the pipeline runs them
    (stats.csale.run_csale)."""
    from csale_app.kernels.cpu.csale import cluster_null_sizes, merge_top
    from csale_app.stats.csale import top_k_size

    K = top_k_size(VOXEL_THRESH, n)
    state = None
    for s, c in chunks(n, chunk):
        part = backend.csale_pass1_chunk(plan, s, c, obs_log, K)
        if state is None:
            state = part
        else:
            top, top_id = merge_top(
                [state["top"], part["top"]], [state["top_id"], part["top_id"]], K
            )
            state = {
                "counts": state["counts"] + part["counts"],
                "top": top,
                "top_id": top_id,
                "max": np.concatenate([state["max"], part["max"]]),
            }
    sizes = cluster_null_sizes(
        state["top"], state["top_id"], VOXEL_THRESH * (n - 1), n, plan.grid.forward_neighbours, 2
    )
    return {**state, "size": sizes}


def check_against_cpu(gpu, cases, n):
    """The first n permutations on both backends: every output must be equal."""
    from csale_app.kernels.engine import CPUBackend

    cpu = CPUBackend(1)
    (ale_plan, thresh, _), (cs_plan, obs_log, _) = cases
    a = run_ale(gpu, ale_plan, thresh, n, n)
    b = run_ale(cpu, ale_plan, thresh, n, n)
    c = run_csale(gpu, cs_plan, obs_log, n, n)
    d = run_csale(cpu, cs_plan, obs_log, n, n)
    bad = [f"ale {k}" for k in a if not np.array_equal(a[k], b[k])]
    bad += [f"csale {k}" for k in c if not np.array_equal(c[k], d[k])]
    return bad


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=10000)
    ap.add_argument("--batch-size", default="auto", help="auto or N permutations per launch")
    ap.add_argument("--gpu-id", type=int, default=0)
    ap.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="+",
        default=None,
        help="permutations per backend call [the pipeline's, and all at once]",
    )
    ap.add_argument(
        "--check",
        type=int,
        default=32,
        help="compare the first N permutations with the CPU backend [32; 0: skip]",
    )
    ap.add_argument("--roi-dilation-mm", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    from csale_app.kernels.device import cuda_status

    ok, text = cuda_status()
    if not ok:
        print(f"bench_gpu: needs an NVIDIA GPU; none usable here ({text}). Nothing timed.")
        return 0
    from csale_app.kernels.backend_spec import BackendSpec
    from csale_app.kernels.cuda.backend import CUDABackend
    from csale_app.settings import Settings, batch_size

    batch = batch_size(args.batch_size)  # the CLI's check of --batch-size
    backend = CUDABackend(
        BackendSpec("cuda", gpu_id=args.gpu_id, batch_size=None if batch == "auto" else int(batch))
    )
    if backend.simulated:
        print("bench_gpu: the numba CUDA simulator is enabled; timings would be meaningless.")
        return 0
    chunk_sizes = args.chunk_sizes or sorted({Settings.chunk_size, args.iters})
    print(
        f"machine: {platform.node()}, {platform.system()}, python "
        f"{platform.python_version()}; GPU {args.gpu_id}: {backend.device_name}"
    )
    t0 = time.perf_counter()
    img, brain, db = load_nback()
    cases = (
        ale_case(img, brain, db, args.seed),
        csale_case(img, brain, db, args.seed, args.roi_dilation_mm),
    )
    print(
        f"n-back: {db.n_experiments} experiments, {db.n_foci} foci; setup "
        f"{time.perf_counter() - t0:.1f} s"
    )

    # warm-up: compile the kernels (and the CPU's, for the check)
    (ale_plan, thresh, ale_exps), (cs_plan, obs_log, cs_exps) = cases
    run_ale(backend, ale_plan, thresh, 4, 4)
    run_csale(backend, cs_plan, obs_log, 4, 4)
    if args.check > 0:
        bad, dt = timed(lambda: check_against_cpu(backend, cases, args.check))
        status = "equal" if not bad else "DIFFERENT: " + ", ".join(bad)
        print(f"check vs CPU, first {args.check} permutations: {status} ({dt:.1f} s)")

    print()
    print(
        "| analysis | mask voxels | experiments | foci | device | chunk | batch | iterations "
        "| seconds | it/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, plan, exps, fn in (
        (
            "ALE FWE (whole brain)",
            ale_plan,
            ale_exps,
            lambda n, c: run_ale(backend, ale_plan, thresh, n, c),
        ),
        (
            f"C-SALE pass 1 + 2 (cerebellum +{args.roi_dilation_mm:g} mm)",
            cs_plan,
            cs_exps,
            lambda n, c: run_csale(backend, cs_plan, obs_log, n, c),
        ),
    ):
        for chunk in chunk_sizes:
            chunk = min(chunk, args.iters)
            _, dt = timed(lambda fn=fn, chunk=chunk: fn(args.iters, chunk))
            print(
                f"| {name} | {plan.grid.n_mask} | {exps.n_experiments} | {exps.n_foci} | "
                f"{backend.device_name} | {chunk} | {backend.last_batch_size} | "
                f"{args.iters} | {dt:.2f} | {args.iters / dt:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
