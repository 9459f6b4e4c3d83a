"""Micro-benchmark of the CPU permutation pass: ns per kernel-box voxel per core, split by part.

    python benchmarks/bench_scatter.py                  # pain, n-back, MACM-600; 1 and all threads
    python benchmarks/bench_scatter.py --cases pain --repeats 7 --json out.json

A kernel-box voxel is one voxel of one focus's (cubic) kernel box: a permutation of pain
(21 experiments, 267 foci) scatters about 1.4 M of them. Every figure below is divided by
that count, so the parts add up to the whole pass:

- (a) **adds**: a plain numba loop adding each focus's kernel cube row by row into a dense
  padded volume at the very positions the permutation draws (fastmath, no row lookup, no
  clipping, no overlap handling): what the additions alone cost, the floor of any scatter.
- (b) **per row**: the engine's scatter of the same foci into the row hull (every focus
  added directly), minus (a): row lookup, clipping to the mask row, short-row tails.
- (c) **per focus**: the engine's whole per-permutation sum (``null_log_sum``: draw, overlap
  test, the scratch minimum and flush of overlapping foci), minus (a) + (b).
- (d) **scan**: the whole pass (``fwe_null_chunk``: max, threshold, cluster union-find,
  accumulator reset), minus (a) + (b) + (c).

"all threads" runs ``fwe_null_chunk`` on every numba thread and reports wall time x threads /
box voxels (ns per box voxel per core). ``reference`` is the issue's plain loop: a 17^3
kernel added at 267 random positions of a 91 x 109 x 91 volume.

The machine may be shared: each figure is the minimum over ``--repeats`` runs, the one-thread
parts in process CPU time, the all-threads pass in wall time. Run the same
command on two checkouts (``PYTHONPATH``) back to back, interleaved, to compare code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def _load(case: str):
    """(grid, plan) of a case: whole-brain mask, uniform null sampler, seed 1."""
    from csale_app.io.experiments import build_experiments
    from csale_app.io.templates import load_brain_mask
    from csale_app.kernels.engine import build_null_plan
    from csale_app.kernels.plan import build_grid, uniform_sampler
    from csale_app.stats.ale import kernels_for

    img = load_brain_mask()
    brain = np.asanyarray(img.dataobj) > 0
    if case == "macm600":
        from synthetic_database import synthetic_foci

        foci = synthetic_foci(600, seed=2025)
        foci["source_file"], foci["source_line"] = "synthetic", np.arange(len(foci)) + 2
        exps = build_experiments(foci, img.affine, brain.shape, merge_contrasts=False)
    else:
        from run_benchmarks import load_case

        _, _, exps, _ = load_case(case)
    grid = build_grid(brain)
    table, kid = kernels_for(exps, grid, None, 8.0)
    plan = build_null_plan(grid, table, kid, exps.foci_counts(), uniform_sampler(grid), 1)
    return grid, plan


def _compile(cpu):
    """The timing loops, compiled against the engine module ``cpu`` (kernels/cpu/ale.py)."""
    from numba import njit

    from csale_app.kernels.plan import PAD
    from csale_app.kernels.rng import compile_rng

    _, uniform01, draw_index = compile_rng(njit(inline="always"))
    scatter = cpu._scatter
    null_log_sum = cpu.null_log_sum
    # the engine after issue 25 splits rows (acc, scratch, shared, split); before, (buf, mode)
    rows_split = hasattr(cpu, "focus_buffers")

    @njit
    def draw(perm, key, exp_focus_start, cand_ijk, cdf, out):
        for f in range(exp_focus_start[-1]):
            c = draw_index(uniform01(key, perm, f), cdf, cand_ijk.shape[0])
            out[f, 0] = cand_ijk[c, 0]
            out[f, 1] = cand_ijk[c, 1]
            out[f, 2] = cand_ijk[c, 2]

    @njit(fastmath=True)
    def adds(ijk, exp_kernel, exp_focus_start, cube_start, k_width, cube, vol):
        """(a): every focus's whole cube, row by row, into a dense padded volume."""
        s1 = vol.shape[1]
        s2 = vol.shape[2]
        flat = vol.reshape(-1)
        for e in range(exp_kernel.shape[0]):
            kid = exp_kernel[e]
            w = k_width[kid]
            h = w // 2
            cs = cube_start[kid]
            for f in range(exp_focus_start[e], exp_focus_start[e + 1]):
                for a in range(w):
                    for b in range(w):
                        ob = np.uint64(
                            ((ijk[f, 0] + a - h + PAD) * s1 + ijk[f, 1] + b - h + PAD) * s2
                            + ijk[f, 2]
                            - h
                            + PAD
                        )
                        ok = np.uint64(cs + (a * w + b) * w)
                        for t in range(w):
                            flat[ob + np.uint64(t)] += cube[ok + np.uint64(t)]

    @njit
    def scatter_all(
        ijk,
        exp_kernel,
        exp_focus_start,
        cube_start,
        k_width,
        cube,
        row_lookup,
        row_zlo,
        row_zhi,
        row_off,
        acc,
    ):
        """(a) + (b): the engine's direct-add scatter of every focus into the hull."""
        shared = np.zeros(1, np.uint8)
        for e in range(exp_kernel.shape[0]):
            kid = exp_kernel[e]
            for f in range(exp_focus_start[e], exp_focus_start[e + 1]):
                if rows_split:
                    scatter(
                        ijk[f, 0],
                        ijk[f, 1],
                        ijk[f, 2],
                        cube_start[kid],
                        k_width[kid],
                        cube,
                        row_lookup,
                        row_zlo,
                        row_zhi,
                        row_off,
                        acc,
                        acc,
                        shared,
                        False,
                    )
                else:
                    scatter(
                        ijk[f, 0],
                        ijk[f, 1],
                        ijk[f, 2],
                        cube_start[kid],
                        k_width[kid],
                        cube,
                        row_lookup,
                        row_zlo,
                        row_zhi,
                        row_off,
                        acc,
                        0,
                    )

    @njit
    def sums(perm0, n_perm, args, bufs):
        """(a) + (b) + (c): the engine's per-permutation sum, accumulator not scanned."""
        acc = bufs[0]
        for p in range(perm0, perm0 + n_perm):
            null_log_sum(p, *args, *bufs)
            acc[:] = 0.0

    return draw, adds, scatter_all, sums


def _best(fn, repeats: int, clock=time.process_time) -> float:
    """Minimum time of ``repeats`` calls. One-thread parts use the process's CPU time, which
    a busy machine inflates less than wall time; the all-threads pass uses wall time (idle
    pool threads may spin)."""
    best = np.inf
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def bench_case(case: str, n_perm: int, repeats: int) -> dict:
    import numba

    from csale_app.kernels.cpu import ale as cpu
    from csale_app.kernels.engine import log_threshold, plan_args

    grid, plan = _load(case)
    draw, adds, scatter_all, sums = _compile(cpu)
    k = plan.kernels
    widths = k.width[plan.exp_kernel].astype(np.int64)
    box = int((np.diff(plan.exp_focus_start) * widths**3).sum())
    n_foci = plan.n_foci
    ijk = [np.empty((n_foci, 3), np.int32) for _ in range(n_perm)]
    for p in range(n_perm):
        draw(p, plan.key, plan.exp_focus_start, plan.sampler.ijk, plan.sampler.cdf, ijk[p])
    from csale_app.kernels.plan import PAD

    vol = np.zeros(tuple(s + 2 * PAD for s in grid.shape), np.float32)
    acc = np.zeros(grid.hull_to_mask.shape[0], np.float32)
    args = plan_args(plan)  # key, exp_kernel, ..., hull_to_mask, n_mask
    ek, fs, cs, kw, cube = args[1:6]
    rows = (grid.row_lookup, grid.row_zlo, grid.row_zhi, grid.row_off)

    def run_adds():
        for p in range(n_perm):
            adds(ijk[p], ek, fs, cs, kw, cube, vol)

    def run_scatter():
        for p in range(n_perm):
            scatter_all(ijk[p], ek, fs, cs, kw, cube, *rows, acc)
            acc[:] = 0.0

    if hasattr(cpu, "focus_buffers"):
        bufs = cpu.focus_buffers(plan.exp_focus_start, acc.size)
    else:
        max_foci = int(np.diff(plan.exp_focus_start).max())
        bufs = (acc, np.zeros_like(acc), np.empty((max_foci, 4), np.int32))

    def run_sums():
        sums(0, n_perm, tuple(args[:12]), bufs)

    thresh = 0.01
    out = [np.zeros(n_perm), np.zeros(n_perm, np.int64), np.zeros(n_perm)]

    def run_pass(threads):
        numba.set_num_threads(threads)
        cpu.fwe_null_chunk(
            0, n_perm, threads, *args, grid.forward_neighbours, log_threshold(thresh), thresh, *out
        )

    n_all = numba.config.NUMBA_NUM_THREADS
    for fn in (run_adds, run_scatter, run_sums, lambda: run_pass(1)):  # compile / warm up
        fn()
    t = {"adds": 0.0, "scatter": 0.0, "sums": 0.0, "pass": 0.0, "pass_all": 0.0}
    for key in t:
        t[key] = np.inf
    for _ in range(repeats):  # interleave the parts so that a busy moment hits them alike
        t["adds"] = min(t["adds"], _best(run_adds, 1))
        t["scatter"] = min(t["scatter"], _best(run_scatter, 1))
        t["sums"] = min(t["sums"], _best(run_sums, 1))
        t["pass"] = min(t["pass"], _best(lambda: run_pass(1), 1))
        t["pass_all"] = min(t["pass_all"], _best(lambda: run_pass(n_all), 1, time.perf_counter))
    ns = {key: v / n_perm / box * 1e9 for key, v in t.items()}
    return {
        "case": case,
        "experiments": plan.n_experiments,
        "foci": n_foci,
        "box_voxels_per_perm": box,
        "permutations": n_perm,
        "repeats": repeats,
        "threads_all": n_all,
        "ns_adds": ns["adds"],
        "ns_per_row": ns["scatter"] - ns["adds"],
        "ns_per_focus": ns["sums"] - ns["scatter"],
        "ns_scan": ns["pass"] - ns["sums"],
        "ns_total_1": ns["pass"],
        "ns_total_all_per_core": ns["pass_all"] * n_all,
        "ms_per_perm_1": t["pass"] / n_perm * 1e3,
    }


def bench_reference(repeats: int) -> float:
    """The issue's plain loop: a 17^3 kernel at 267 random positions of 91 x 109 x 91."""
    from numba import njit

    @njit(fastmath=True)
    def add_at(vol, kern, pos):
        w = kern.shape[0]
        kf = kern.reshape(-1)
        s1, s2 = vol.shape[1], vol.shape[2]
        flat = vol.reshape(-1)
        for p in range(pos.shape[0]):
            for a in range(w):
                for b in range(w):
                    ob = np.uint64(((pos[p, 0] + a) * s1 + pos[p, 1] + b) * s2 + pos[p, 2])
                    ok = np.uint64((a * w + b) * w)
                    for t in range(w):
                        flat[ob + np.uint64(t)] += kf[ok + np.uint64(t)]

    rng = np.random.default_rng(0)
    vol = np.zeros((91, 109, 91), np.float32)
    kern = rng.random((17, 17, 17)).astype(np.float32) * -0.01
    pos = rng.integers(0, [91 - 17, 109 - 17, 91 - 17], size=(267, 3))
    add_at(vol, kern, pos)
    reps = 20
    best = _best(lambda: [add_at(vol, kern, pos) for _ in range(reps)], repeats)
    return best / reps / (267 * 17**3) * 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--cases",
        nargs="+",
        default=["pain", "nback", "macm600"],
        choices=["pain", "nback", "macm600"],
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply permutation counts")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args(argv)
    perms = {"pain": 100, "nback": 6, "macm600": 2}
    rows = []
    ref = bench_reference(a.repeats)
    print(f"reference (17^3 kernel, 267 random positions, 1 thread): {ref:.3f} ns per box voxel")
    head = (
        "| case | experiments | foci | box voxels / perm | (a) adds | (b) per row | "
        "(c) per focus | (d) scan | total, 1 thread | total, all threads (per core) |"
    )
    print(head)
    print("|" + "---|" * 10)
    for case in a.cases:
        r = bench_case(case, max(1, int(perms[case] * a.scale)), a.repeats)
        rows.append(r)
        print(
            f"| {case} | {r['experiments']} | {r['foci']} | {r['box_voxels_per_perm']:,} | "
            f"{r['ns_adds']:.3f} | {r['ns_per_row']:.3f} | {r['ns_per_focus']:.3f} | "
            f"{r['ns_scan']:.3f} | {r['ns_total_1']:.3f} | "
            f"{r['ns_total_all_per_core']:.3f} ({r['threads_all']}) |",
            flush=True,
        )
    if a.json:
        a.json.write_text(json.dumps({"reference": ref, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
