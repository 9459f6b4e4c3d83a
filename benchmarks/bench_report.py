"""Whole-run and report times of the CLI (issue 15: start-up costs, the report's figures).

    python benchmarks/bench_report.py                          # this tree, pain, 1,000
    python benchmarks/bench_report.py --tree /tmp/old_checkout  # another checkout, same runs
    python benchmarks/bench_report.py --iters 10000 --repeats 2 --cases first

Cases, each a fresh ``csale-app`` process (``--analyses ale``, default ``--nprocs``):
``first``: a new OUTPUT_DIR (permutations, tables, maps, report, every figure drawn);
``reused``: the same command again on that OUTPUT_DIR (the studyset is reused, only the
report is built); ``two``: two studysets that share an ROI (NiMARE's n-back and flanker
studyset as in ``demo_input/``, built-in cerebellum ROI), new OUTPUT_DIR. Printed per case:
wall time of the whole command (start to exit, as a user waits for it), the time from the
end of the last null to "report written" in the run log (tables, maps, report), and the
report's own figure counts from that log line. ``--tree`` runs the ``csale_app`` package of
another checkout with this tree's interpreter (e.g. ``git worktree add /tmp/old HEAD~3``)
for a before/after in one run. Numba's cache must be warm for both trees (run once first).
Not a test: timings vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runs the CLI from --tree (or this checkout) even with an editable install of this one.
LAUNCH = """
import sys
root = sys.argv.pop(1)
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, root)
import csale_app
assert csale_app.__file__.startswith(root), csale_app.__file__
from csale_app.cli.run import main
sys.exit(main(sys.argv[1:]))
"""
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$")


def nimare_resources() -> Path:
    import nimare

    return Path(nimare.__file__).parent / "resources"


def prepare_inputs(base: Path) -> dict[str, Path]:
    pain = base / "pain"
    pain.mkdir(parents=True)
    shutil.copy(nimare_resources() / "nidm_pain_dset.json", pain / "pain.json")
    two = base / "two"
    two.mkdir()
    for name in ("nback", "flanker"):  # the embedded demo data (csale_app.io.demo_data)
        shutil.copy(ROOT / "demo_input" / f"{name}.tsv", two / f"{name}.tsv")
    return {"pain": pain, "two": two}


def log_times(out: Path) -> dict:
    """Seconds from the last null's end to 'report written', and the figure counts."""
    lines = "".join(p.read_text() for p in sorted((out / "logs").glob("*.log"))).splitlines()
    stamps = []
    for line in lines:
        m = STAMP.match(line)
        if m:
            stamps.append((datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f"), m[2]))
    run_start = max(i for i, (_, msg) in enumerate(stamps) if msg.startswith("csale-app "))
    stamps = stamps[run_start:]
    written = next(((t, msg) for t, msg in stamps if msg.startswith("report written")), None)
    nulls = [t for t, msg in stamps if re.search(r"null: \d+ permutations in", msg)]
    start = nulls[-1] if nulls else stamps[0][0]
    counts = re.search(r"figures drawn (\d+), reused (\d+)", written[1]) if written else None
    return {
        "after_null_s": (written[0] - start).total_seconds() if written else None,
        "figures": f"{counts[1]} drawn, {counts[2]} reused" if counts else "n/a",
    }


def run_case(tree: Path, inp: Path, out: Path, args: list[str]) -> dict:
    cmd = [sys.executable, "-c", LAUNCH, str(tree), str(inp), str(out), "group", *args, "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {' '.join(cmd[3:])}\n{proc.stderr[-2000:]}")
    return {"wall_s": wall, **log_times(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose csale_app runs")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--cases", nargs="+", choices=["first", "reused", "two"], default=["first", "reused", "two"]
    )
    a = ap.parse_args()
    tree = a.tree.resolve()
    base = Path(tempfile.mkdtemp(prefix="csale_bench_report_"))
    try:
        inputs = prepare_inputs(base)
        pain_args = ["--analyses", "ale", "--n-iters", str(a.iters)]
        two_args = pain_args + ["--roi", "cerebellum"]
        rows = []
        for rep in range(a.repeats):
            out = base / f"pain-out-{rep}"
            if "first" in a.cases or "reused" in a.cases:
                first = run_case(tree, inputs["pain"], out, pain_args)
                if "first" in a.cases:
                    rows.append(("pain, new OUTPUT_DIR", first))
            if "reused" in a.cases:
                rows.append(
                    ("pain again (studyset reused)", run_case(tree, inputs["pain"], out, pain_args))
                )
            if "two" in a.cases:
                rows.append(
                    (
                        "n-back + flanker, shared ROI",
                        run_case(tree, inputs["two"], base / f"two-out-{rep}", two_args),
                    )
                )
        print(f"tree: {tree}, {a.iters} permutations")
        print("| case | whole command | null end -> report written | figures |")
        print("|---|---|---|---|")
        for name, r in rows:
            after = f"{r['after_null_s']:.2f} s" if r["after_null_s"] is not None else "n/a"
            print(f"| {name} | {r['wall_s']:.2f} s | {after} | {r['figures']} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
