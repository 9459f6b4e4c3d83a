"""Scale-out (issue 16): permutation chunks on a Dask cluster give byte-identical results,
survive a killed worker and resume from checkpoints; the reference database is read,
de-duplicated and indexed vectorized with the same result as the former per-experiment loop.

The job-array recipe (one run per --studyset-label, then one group run that reuses them) is
tested in tests/stats/test_results_meaning.py (test_split_runs_give_byte_identical_maps_and_tables,
test_group_run_after_the_array_reuses_both_studysets).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from csale_app.cli.run import main
from csale_app.io import database as D
from csale_app.io.experiments import build_experiments
from csale_app.io.read_tables import read_table
from csale_app.io.readers import read_studyset

distributed = pytest.importorskip("distributed")

from tests.io.former_builder import loop_build_experiments, same_experiments  # noqa: E402
from tests.dask_procs import (  # noqa: E402
    CHUNK,
    FAST,
    kill_inside_a_chunk,
    results_digest as tree_digest,
    slow_chunks,
)


@pytest.fixture(scope="module")
def cluster():
    from csale_app.distributed import disconnect

    with distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as c:
        yield c
        disconnect(c.scheduler_address)


# ---- byte-identical on a cluster -----------------------------------------------------------
def test_ale_csale_macm_on_two_workers_equal_one_process(
    demo_input, cluster, reference, small_chunks, tmp_path
):
    out = tmp_path / "out"
    assert (
        main(
            [
                str(demo_input),
                str(out),
                "group",
                *FAST,
                "--dask-scheduler",
                cluster.scheduler_address,
            ]
        )
        == 0
    )
    got = tree_digest(out)
    assert got == reference, sorted(k for k in reference if reference[k] != got.get(k))
    # the sidecars say which worker computed which chunk (5 chunks of 8 permutations)
    sidecars = list(out.rglob("*_stat-z_statmap.json"))
    assert len(sidecars) == 4  # ALE, C-SALE and the MACM's ALE and C-SALE
    for side in sidecars:
        who = json.loads(side.read_text())["ComputedBy"]
        assert who["DaskScheduler"] == cluster.scheduler_address
        assert who["PermutationsPerChunk"] == CHUNK and who["ChunksFromCheckpoints"] == []
        chunks = sorted(c for w in who["Workers"] for c in w["Chunks"])
        assert chunks == list(range(5)), side
        assert {w["Worker"] for w in who["Workers"]} <= set(cluster.scheduler_info["workers"])
        assert all(w["Device"].startswith("CPU") for w in who["Workers"])
    null = pd.read_csv(next(out.rglob("*meta-csale_desc-null_values.tsv")), sep="\t")
    assert len(null) == 40 and null["max_cluster_size"].max() > 0  # cluster FWE exercised


def test_killed_worker_costs_only_its_chunks(
    demo_input, cluster, reference, small_chunks, tmp_path
):
    """SIGKILL one worker process while chunks run: Dask recomputes its tasks (its nanny
    starts a new worker) and the maps are the same."""
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    client.run(slow_chunks, 0.3)  # so that the kill lands inside a chunk
    killed = []

    t = threading.Thread(target=kill_inside_a_chunk, args=(client, killed), daemon=True)
    t.start()
    out = tmp_path / "out"
    try:
        assert (
            main(
                [
                    str(demo_input),
                    str(out),
                    "group",
                    *FAST,
                    "--dask-scheduler",
                    cluster.scheduler_address,
                ]
            )
            == 0
        )
    finally:
        t.join(timeout=5)
        client.wait_for_workers(2, timeout=60)
        client.run(slow_chunks, 0)
        client.close()
    assert killed, "no worker was killed during the run"
    got = tree_digest(out)
    assert got == reference, sorted(k for k in reference if reference[k] != got.get(k))


def test_reduce_on_cluster_equals_sequential_and_resumes(cluster):
    """The tree reduction gives the sequential fold (equal values keep permutation order),
    checkpoints are the sequential run's files, and a run resumes from them."""
    from csale_app.distributed import connect
    from csale_app.kernels.cpu.csale import merge_top
    from csale_app.stats.montecarlo import run_chunked, run_chunked_reduce

    K = 4

    def compute(start, count):  # many ties: values from {-3, -2, -1}
        rng = np.random.default_rng(start)
        top = np.sort(rng.integers(-3, 0, (30, K)).astype(np.float32), axis=1)
        ids = np.tile(np.arange(start, start + K, dtype=np.int32), (30, 1))
        return {
            "counts": np.full(30, count),
            "top": top,
            "top_id": ids,
            "max": np.arange(start, start + count, dtype=float),
        }

    def reduce(state, part):
        if state is None:
            return part
        top, top_id = merge_top([state["top"], part["top"]], [state["top_id"], part["top_id"]], K)
        return {
            "counts": state["counts"] + part["counts"],
            "top": top,
            "top_id": top_id,
            "max": np.concatenate([state["max"], part["max"]]),
        }

    class Store(dict):
        def put(self, index, arrays):
            self[index] = arrays

    ex = connect(cluster.scheduler_address)
    seq, dist = Store(), Store()
    a = run_chunked_reduce(103, 5, compute, reduce, store=seq)
    b = run_chunked_reduce(103, 5, compute, reduce, store=dist, executor=ex)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert dist and all(all(np.array_equal(dist[i][k], seq[i][k]) for k in a) for i in dist)
    resumed = run_chunked_reduce(103, 5, compute, reduce, store=Store({6: seq[6]}), executor=ex)
    assert all(np.array_equal(a[k], resumed[k]) for k in a)
    x, y = run_chunked(103, 5, compute), run_chunked(103, 5, compute, executor=ex)
    assert all(np.array_equal(x[k], y[k]) for k in x)


def test_unreachable_scheduler_is_one_line_exit_69(demo_input, tmp_path, capsys):
    t0 = time.monotonic()
    code = main(
        [
            str(demo_input),
            str(tmp_path / "out"),
            "group",
            *FAST,
            "--dask-scheduler",
            "127.0.0.1:9",
            "--dask-timeout",
            "1.5",
        ]
    )
    elapsed = time.monotonic() - t0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 69, err
    assert not any("Traceback" in line or "Error" in line for line in err), err
    assert [line for line in err if "WARNING" not in line] == [err[-1]], err  # one line
    assert "tcp://127.0.0.1:9" in err[-1] and "within 1.5 s (--dask-timeout)" in err[-1]
    assert elapsed < 20  # the timeout, plus the inputs and a short close; no 40 s wait


def test_package_does_not_import_dask():
    code = (
        "import sys, csale_app.pipeline, csale_app.stages, csale_app.cli.run; "
        "print(any(m == 'dask' or m.startswith(('dask.', 'distributed')) "
        "for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- large databases -----------------------------------------------------------------------
def old_load(files):
    """The former Pipeline.load_database loop (reference for the vectorized one)."""
    frames, seen = [], set()
    for f in files:
        frame = read_studyset(f)
        keep = []
        for key, grp in frame.groupby(["study_id", "contrast_id"], sort=False):
            sig = (key, tuple(sorted(map(tuple, grp[["x", "y", "z"]].to_numpy().round(3)))))
            if sig not in seen:
                seen.add(sig)
                keep.append(grp)
        if keep:
            frames.append(pd.concat(keep))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def db_files(demo_input, tmp_path_factory):
    """The demo studysets, a reshuffled copy of n-back (same experiments, foci in another
    order: duplicates), and a Talairach file with a sidecar, an experiment partly outside
    the template and one wholly outside it."""
    d = tmp_path_factory.mktemp("db")
    nback = pd.read_csv(demo_input / "nback.tsv", sep="\t")
    shuffled = nback.sample(frac=1.0, random_state=0)
    shuffled.iloc[:200].to_csv(d / "nback_again.tsv", sep="\t", index=False)
    other = pd.DataFrame(
        {
            "study": ["t1"] * 3 + ["t2"] * 2 + ["t3"] * 2,
            "contrast": ["a", "a", "b", "a", "a", "z", "z"],
            "x": [10.5, -20, 30, 300, 12, 500, 501],
            "y": [0, 10, -40, 0, 14, 0, 0],
            "z": [0, 20, 10, 0, 16, 0, 0],
            "n": [12, 12, 20, 9, 9, 5, 5],
        }
    )
    other.to_csv(d / "tal.csv", index=False)
    (d / "tal.json").write_text('{"space": "TAL"}')
    return [
        demo_input / "nback.tsv",
        demo_input / "flanker.tsv",
        d / "nback_again.tsv",
        d / "tal.csv",
        demo_input / "nback.tsv",
    ]


def test_plain_table_reader_equals_the_row_by_row_reader(db_files):
    for f in db_files:
        pd.testing.assert_frame_equal(read_table(f), read_table(f, fast=False))


def test_database_dedup_and_index_equal_the_former_loop(db_files):
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask()
    shape = img.shape
    old = old_load(db_files)
    new = D.deduplicate([read_studyset(f) for f in db_files])
    pd.testing.assert_frame_equal(old, new)
    assert len(new) < sum(len(read_studyset(f)) for f in db_files)  # duplicates went
    for merge in (True, False):
        for fwhm in (None, 9.0):
            same_experiments(
                loop_build_experiments(old, img.affine, shape, merge, fwhm),
                build_experiments(new, img.affine, shape, merge, fwhm),
            )


def test_database_reader_falls_back_on_problems(tmp_path):
    """Anything the fast path does not handle is read (and reported) by the readers."""
    from csale_app.errors import InputError

    bad = tmp_path / "bad.tsv"
    bad.write_text("study_id\tx\ty\tz\tspace\ns1\t1\t2\tnope\tMNI\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: z coordinate 'nope' is not a number"):
        read_table(bad)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('study_id,x,y,z,space\n"s, 1",1,2,3,MNI\n\ns2,4,5,6,TAL\n')
    pd.testing.assert_frame_equal(read_table(quoted), read_table(quoted, fast=False))


# ---- studysets and MACM seeds as independent units ------------------------------------------
def test_two_studysets_and_their_macms_side_by_side_equal_one_process(
    demo_input, cluster, small_chunks, tmp_path
):
    """Both studysets (each with its MACM) run as independent units sharing the cluster;
    every file equals the sequential single-process run's."""
    args = [a for a in FAST if a not in ("--studyset-label", "flanker")]
    assert main([str(demo_input), str(tmp_path / "one"), "group", *args]) == 0
    assert (
        main(
            [
                str(demo_input),
                str(tmp_path / "dask"),
                "group",
                *args,
                "--dask-scheduler",
                cluster.scheduler_address,
            ]
        )
        == 0
    )
    a, b = tree_digest(tmp_path / "one"), tree_digest(tmp_path / "dask")
    assert {k.split("/")[0] for k in a} >= {"studyset-nback", "studyset-flanker"}
    assert a == b, sorted(k for k in a if a[k] != b.get(k))


def test_units_run_in_order_one_client_thread_computing_at_a_time():
    """run_all: results in order; the lock lets one unit compute at a time, is given away
    while a unit waits (nested units, as MACM seeds inside a studyset, do not deadlock)."""
    from types import SimpleNamespace

    from csale_app.tasks import ClientLock, run_all

    ex = SimpleNamespace(lock=ClientLock())
    active, peak = [0], [0]
    guard = threading.Lock()

    def compute(x):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with guard:
            active[0] -= 1
        with ex.lock.released():  # waiting for the cluster
            time.sleep(0.02)
        return x

    def studyset(k):
        inner = run_all(ex, [lambda j=j: compute(10 * k + j) for j in range(3)])
        return [compute(k)] + inner

    got = run_all(ex, [lambda k=k: studyset(k) for k in range(4)])
    assert got == [[k, 10 * k, 10 * k + 1, 10 * k + 2] for k in range(4)]
    assert peak[0] == 1
