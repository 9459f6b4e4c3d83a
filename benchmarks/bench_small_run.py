"""Where a small run's time goes besides the null (issue 25, item 2).

    python benchmarks/bench_small_run.py                      # this tree, pain, 10,000
    python benchmarks/bench_small_run.py --quick              # 1,000 permutations, 1 repeat
    python benchmarks/bench_small_run.py --tree /tmp/base --repeats 3
    python benchmarks/bench_small_run.py --importtime         # + imports by package

Each repeat is a fresh process running ``csale-app pain OUT group --analyses ale --n-iters N
--nprocs 2`` on NiMARE's ``nidm_pain_dset.json`` into a new OUTPUT_DIR (so no figure is
reused: a first run). The numba cache must be warm (run once first); matplotlib's font cache
is whatever the machine has. Inside that process, before ``main`` runs, timers are put
around the functions of each stage (the same function objects wherever a module imported
them); a timer's time excludes the timed calls nested in it, so the parts add up to the
whole command. Stages:

- start-up: interpreter start and ``import csale_app.cli.run`` (to ``main``);
- templates and atlases: the template, brain masks and atlas images read from disk;
- reading: the studyset's and the database's coordinate tables;
- observed maps: kernels and the observed ALE, z, p;
- null: the permutations (``run_chunked``);
- FWE maps and clusters: p maps from the null, cluster labelling;
- tables and labels: cluster/peak tables with atlas labels, contributions, lobules;
- writing: maps and tables (NIfTI, TSV, sidecars) and the studyset's publication;
- report figures: every drawn figure and viewer (nilearn, matplotlib, PNG encoding);
- report pages: the rest of ``build_report`` (reading the outputs back, HTML);
- report process (waited for): where the report is built by a process forked at the start
  of the run (``report/forked.py``), the time the run waits for it (its figures and pages
  are not timed one by one: they run in that process);
- other: the rest of ``main`` (parsing, logging, context, checks) and interpreter exit.

Work done in another thread (if a version overlaps stages) is counted in its own stage, so
the stages may then add up to more than the whole command. The table prints each stage's
minimum over the repeats and the whole command's minimum; "all but the null" is the whole
command minus the null; "CPU time" is user + system time of the command and every process
it waited for (what the machine spent, whatever ran side by side). Not a test: timings vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = {  # stage -> "module:qualname" of the functions timed (missing ones are skipped)
    "templates and atlases": [
        "csale_app.io.templates:load_brain_mask",
        "csale_app.io.templates:load_t1",
        "csale_app.stats.labels:load_atlas",
        "csale_app.io.roi:load_roi",
    ],
    "reading": [
        "csale_app.pipeline:Pipeline.load_experiments",
        "csale_app.pipeline:Pipeline.load_database",
    ],
    "observed maps": [
        "csale_app.stats.ale:kernels_for",
        "csale_app.stats.ale:observed_ale",
        "csale_app.kernels.engine:build_null_plan",
    ],
    "null": ["csale_app.stats.montecarlo:run_chunked"],
    "FWE maps and clusters": [
        "csale_app.stats.inference:montecarlo_fwe_maps",
        "csale_app.stats.tables:reported_clusters",
    ],
    "tables and labels": ["csale_app.stages:cluster_tables"],
    "writing": [
        "csale_app.pipeline:write_studyset",
        "csale_app.outputs.bids:write_dataset_description",
    ],
    "report figures": [
        f"csale_app.report.figures:{f}_figure"
        for f in (
            "glass_brain",
            "slices",
            "roi",
            "comparison",
            "null",
            "box",
            "logp",
            "peak",
            "foci",
        )
    ]
    + ["csale_app.report.flatmap:flatmap_figure", "csale_app.report.viewer:viewer"],
    "report pages": ["csale_app.report.build:build_report"],
    "report process (waited for)": ["csale_app.report.forked:ReportProcess.build"],
    "other": ["csale_app.cli.run:main"],
}
ORDER = [
    "start-up",
    *[s for s in STAGES if s != "other"],
    "other",
    "whole command",
    "CPU time, all processes",
]

# Runs in the measured process: time the stages, run the CLI, write the times as JSON.
LAUNCH = r"""
import time
T_START = time.time()
import importlib, importlib.machinery, json, sys, threading
root, times_path, spawned = sys.argv[1], sys.argv[2], float(sys.argv[3])
del sys.argv[1:4]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, root)
import csale_app.cli.run
assert csale_app.__file__.startswith(root), csale_app.__file__
T_MAIN = time.time()
STAGES = json.loads(sys.argv.pop(1))
totals, missing, local = {}, [], threading.local()

def timed(fn, stage):
    def call(*a, **k):
        stack = getattr(local, "stack", None)
        if stack is None:
            stack = local.stack = []
        stack.append(0.0)
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            dt = time.perf_counter() - t0
            inner = stack.pop()
            totals[stage] = totals.get(stage, 0.0) + dt - inner
            if stack:
                stack[-1] += dt
    call.__wrapped__ = fn
    call.__name__ = getattr(fn, "__name__", "timed")
    return call

BY_MODULE = {}
for stage, targets in STAGES.items():
    for target in targets:
        mod_name, qual = target.split(":")
        BY_MODULE.setdefault(mod_name, []).append((qual, stage))

def patch(mod):
    for qual, stage in BY_MODULE.pop(mod.__name__, []):
        owner, name = mod, qual
        try:
            if "." in qual:
                cls, name = qual.split(".")
                owner = getattr(mod, cls)
            fn = getattr(owner, name)
        except AttributeError:
            missing.append(f"{mod.__name__}:{qual}")
            continue
        wrapped = timed(fn, stage)
        setattr(owner, name, wrapped)
        if owner is mod:  # the same function imported by name into modules loaded before
            for m in list(sys.modules.values()):
                if getattr(m, "__name__", "").startswith("csale_app") and m is not mod:
                    for attr, value in list(vars(m).items()):
                        if value is fn:
                            setattr(m, attr, wrapped)

class PatchAfterImport:
    # patches a timed module right after it runs, before anyone imports names from it, so
    # the measured process imports what it would import anyway, when it would
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in BY_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            patch(module)
        spec.loader.exec_module = exec_module
        return spec

for name in list(BY_MODULE):
    if name in sys.modules:
        patch(sys.modules[name])
sys.meta_path.insert(0, PatchAfterImport)

def report():
    t_end = time.time()
    never = [f"{m}:{q}" for m, qs in BY_MODULE.items() for q, _ in qs]
    out = {"stages": totals, "missing": missing + never, "start-up": T_MAIN - spawned,
           "main_start": T_MAIN - spawned, "end": t_end - spawned}
    with open(times_path, "w") as f:
        json.dump(out, f)

code = 1
try:
    code = csale_app.cli.run.main(sys.argv[1:])
finally:
    report()
sys.exit(code)
"""


def nimare_resources() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nimare")
    return Path(list(spec.submodule_search_locations)[0]) / "resources"


def run_once(
    tree: Path,
    inp: Path,
    out: Path,
    iters: int,
    nprocs: int,
    analyses: list[str],
    importtime: bool = False,
) -> dict:
    times = out.with_suffix(".times.json")
    args = [
        str(inp),
        str(out),
        "group",
        "--analyses",
        *analyses,
        "--n-iters",
        str(iters),
        "--nprocs",
        str(nprocs),
        "--quiet",
    ]
    flags = ["-X", "importtime"] if importtime else []
    spawned = time.time()
    cmd = [
        sys.executable,
        *flags,
        "-c",
        LAUNCH,
        str(tree),
        str(times),
        str(spawned),
        json.dumps(STAGES),
        *args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI and what it waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {' '.join(args)}\n{proc.stderr[-3000:]}")
    t = json.loads(times.read_text())
    stages = {
        "start-up": t["start-up"],
        **t["stages"],
        "whole command": wall,
        "CPU time, all processes": cpu,
    }
    # after main returned: logging shutdown, atexit, interpreter exit
    stages["other"] = stages.get("other", 0.0) + wall - t["end"]
    return {
        "stages": stages,
        "missing": t["missing"],
        "importtime": imports_by_package(proc.stderr) if importtime else None,
    }


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def imports_by_package(stderr: str) -> dict[str, float]:
    """Seconds of ``-X importtime`` self time, summed per top-level package."""
    per: dict[str, float] = {}
    for m in IMPORT_LINE.finditer(stderr):
        top = m[4].split(".")[0]
        per[top] = per.get(top, 0.0) + int(m[1]) / 1e6
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def table(rows: dict[str, list[float]], header: str) -> str:
    lines = [f"| stage | {header} |", "|---|---|"]
    for stage in ORDER:
        if stage in rows:
            lines.append(f"| {stage} | {min(rows[stage]):.2f} s |")
    whole = min(rows["whole command"])
    null = min(rows.get("null", [0.0]))
    rest = min(w - n for w, n in zip(rows["whole command"], rows.get("null", [0.0] * 99)))
    lines.append(f"| all but the null (whole - null, min per run) | {rest:.2f} s |")
    lines.append(f"| (whole min {whole:.2f} s, null min {null:.2f} s) | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose csale_app runs")
    ap.add_argument("--iters", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--analyses", nargs="+", default=["ale"])
    ap.add_argument("--quick", action="store_true", help="1,000 permutations, 1 repeat")
    ap.add_argument(
        "--importtime",
        action="store_true",
        help="one more run under -X importtime: import seconds per package",
    )
    ap.add_argument("--json", type=Path, help="also write every run's stages here")
    a = ap.parse_args()
    if a.quick:
        a.iters, a.repeats = 1000, 1
    tree = a.tree.resolve()
    base = Path(tempfile.mkdtemp(prefix="csale_bench_small_"))
    try:
        inp = base / "pain"
        inp.mkdir()
        shutil.copy(nimare_resources() / "nidm_pain_dset.json", inp / "pain.json")
        rows: dict[str, list[float]] = {}
        runs = []
        for rep in range(a.repeats):
            r = run_once(tree, inp, base / f"out-{rep}", a.iters, a.nprocs, a.analyses)
            runs.append(r)
            for k, v in r["stages"].items():
                rows.setdefault(k, []).append(v)
            print(
                f"run {rep + 1}: whole {r['stages']['whole command']:.2f} s, null "
                f"{r['stages'].get('null', 0.0):.2f} s",
                file=sys.stderr,
            )
        if runs and runs[0]["missing"]:
            print("not timed (not in this tree): " + ", ".join(runs[0]["missing"]))
        print(
            f"tree: {tree}; pain, --analyses {' '.join(a.analyses)}, {a.iters} "
            f"permutations, --nprocs {a.nprocs}; min of {a.repeats} fresh run(s)"
        )
        print(table(rows, "seconds"))
        if a.importtime:
            r = run_once(
                tree, inp, base / "out-importtime", a.iters, a.nprocs, a.analyses, importtime=True
            )
            runs.append(r)
            total = sum(r["importtime"].values())
            print(
                f"\nimports under -X importtime (whole run, {total:.2f} s in all; "
                "inflated by the measurement):"
            )
            for pkg, s in list(r["importtime"].items())[:15]:
                print(f"  {pkg:<24} {s:6.2f} s")
        if a.json:
            a.json.write_text(json.dumps(runs, indent=1))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
