"""A Dask cluster as an HPC job runs one (issue 26): real ``dask scheduler`` and ``dask
worker`` processes on 127.0.0.1 found through a scheduler file, a scheduler that dies
mid-run (exit 69, one line, checkpoints kept, a local rerun resumes to the same bytes),
workers killed as the OOM killer does or over ``--memory-limit`` (their chunks are retried,
same bytes), and the addresses and files that must be refused before anything starts.

Every process is killed by the test (tests/dask_procs.py); runs use the shared tiny
flanker run (tests.dask_procs.FAST, chunks of 8 permutations).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from csale_app.cli.run import main
from tests import dask_procs
from tests.dask_procs import FAST, results_digest, slow_chunks

distributed = pytest.importorskip("distributed")


def client_of(cluster):
    return distributed.Client(
        scheduler_file=str(cluster.scheduler_file), set_as_default=False, timeout=30
    )


def errors(capsys) -> list[str]:
    """stderr lines other than the run's warnings."""
    return [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.strip() and "WARNING" not in line
    ]


# ---- refused before anything starts --------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "::not an address::",
        "tcp://host-without-port",
        "http://10.0.0.5:8786",
        "tcp://10.0.0.5:99999",
        "scheduler.json",
    ],
)
def test_malformed_address_is_a_usage_error_at_once(demo_input, tmp_path, capsys, address):
    t0 = time.monotonic()
    code = main([str(demo_input), str(tmp_path / "out"), "group", "--dask-scheduler", address])
    err = errors(capsys)
    assert code == 64 and len(err) == 1, err
    assert "--dask-scheduler" in err[0] and "SCHEME://HOST:PORT" in err[0]
    assert time.monotonic() - t0 < 5 and not (tmp_path / "out").exists()


def test_scheduler_file_problems_name_the_file(demo_input, tmp_path, capsys):
    out = tmp_path / "out"
    run = ["group", "--dask-timeout", "0.5", "--dask-scheduler-file"]
    cases = {
        "missing.json": (66, "does not exist (waited 0.5 s"),
        "folder": (66, "is a folder"),
        "broken.json": (65, "not a Dask scheduler file"),
        "no_address.json": (65, 'no "address" entry'),
        "bad_address.json": (65, '"address": expected a Dask scheduler address'),
    }
    (tmp_path / "folder").mkdir()
    (tmp_path / "broken.json").write_text('{"address": "tcp://')
    (tmp_path / "no_address.json").write_text('{"type": "Scheduler", "id": "x"}')
    (tmp_path / "bad_address.json").write_text('{"address": "::nope::"}')
    for name, (want, text) in cases.items():
        code = main([str(demo_input), str(out), *run, str(tmp_path / name)])
        err = errors(capsys)
        assert code == want and len(err) == 1 and name in err[0] and text in err[0], err
    assert not out.exists()
    code = main(
        [
            str(demo_input),
            str(out),
            "group",
            "--dask-scheduler",
            "tcp://h:1",
            "--dask-scheduler-file",
            str(tmp_path / "no_address.json"),
        ]
    )
    assert code == 64 and "mutually exclusive" in errors(capsys)[0]


def test_unreachable_scheduler_cli_process_exits_69_without_traceback_or_hang(demo_input, tmp_path):
    """The csale-app process itself: one line, exit 69, and no traceback from closing the
    client at exit (it used to wait 40 s and print 'TimeoutError: timed out after 40 s.')."""
    import subprocess
    import sys

    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "csale_app",
            str(demo_input),
            str(tmp_path / "out"),
            "group",
            *FAST,
            "--dask-scheduler",
            "tcp://127.0.0.1:9",
            "--dask-timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dask_procs.env_with_repo(),
    )
    elapsed = time.monotonic() - t0
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 69, proc.stderr
    assert [line for line in err if "WARNING" not in line] == [
        "csale-app: error: --dask-scheduler tcp://127.0.0.1:9: no Dask scheduler answered "
        "within 2 s (--dask-timeout)"
    ], proc.stderr
    assert elapsed < 40, elapsed  # start-up and inputs, the 2 s timeout, no 40 s close
    assert not (tmp_path / "out").exists()  # refused before any output


# ---- the scheduler dies mid-run --------------------------------------------------------------
def test_scheduler_killed_mid_run_exit_69_then_local_rerun_resumes(
    demo_input, reference, small_chunks, tmp_path, capsys, monkeypatch
):
    out, work = tmp_path / "out", tmp_path / "work"
    killed_at = []
    with dask_procs.cluster(tmp_path / "cluster", {"w0": (), "w1": ()}) as cluster:
        with client_of(cluster) as client:
            client.run(slow_chunks, 0.4)  # so that the kill lands between checkpoints

        def kill_after_first_checkpoint():
            for _ in range(1200):
                if any(work.rglob("chunk-*.npz")):
                    dask_procs.kill(cluster.scheduler)
                    killed_at.append(time.monotonic())
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
        watcher.start()
        code = main(
            [
                str(demo_input),
                str(out),
                "group",
                *FAST,
                "-w",
                str(work),
                "--dask-scheduler-file",
                str(cluster.scheduler_file),
                "--dask-timeout",
                "10",
            ]
        )
        ended = time.monotonic()
        watcher.join(timeout=5)
    err = errors(capsys)
    assert killed_at, "the scheduler was not killed during the run"
    assert code == 69, err
    assert len(err) == 1 and "lost the Dask scheduler mid-run" in err[0], err
    assert "tcp://127.0.0.1:" in err[0] and "resume" in err[0]
    assert ended - killed_at[0] < 10 + 5  # no wait beyond --dask-timeout
    kept = sorted(work.rglob("chunk-*.npz"))
    assert kept, "finished chunks were not kept"

    from csale_app.io import workdir

    resumed = []
    get = workdir.ChunkDir.get

    def counting_get(self, index):
        arrays = get(self, index)
        if arrays is not None:
            resumed.append((self.path.name, index))
        return arrays

    monkeypatch.setattr(workdir.ChunkDir, "get", counting_get)
    assert main([str(demo_input), str(out), "group", *FAST, "-w", str(work)]) == 0
    got = results_digest(out)
    assert got == reference, sorted(k for k in reference if reference[k] != got.get(k))
    assert resumed, "the local rerun recomputed every chunk instead of resuming"


# ---- workers killed by the OOM killer or over --memory-limit ------------------------------
def hog_memory_once(step_mb: int = 64, max_gb: float = 4.0) -> None:
    """On a worker: the next chunk first allocates memory until the process is killed (its
    nanny terminates it at 95 % of --memory-limit); the restarted process is clean."""
    from csale_app import distributed as dist

    original = dist.run_backend_chunk

    def hog(*args, **kwargs):
        dist.run_backend_chunk = original
        blocks = []
        for _ in range(int(max_gb * 1024 / step_mb)):
            blocks.append(np.ones(step_mb * 2**20 // 8))
            time.sleep(0.05)
        return original(*args, **kwargs)

    dist.run_backend_chunk = hog


def test_killed_worker_and_worker_over_memory_limit_are_retried(
    demo_input, reference, small_chunks, tmp_path
):
    """Worker "oom" (no nanny) is SIGKILLed inside a chunk, as the kernel's OOM killer does:
    it is gone, and its chunks run elsewhere. Worker "limited" (--memory-limit, with a
    nanny) goes over its limit inside a chunk: the nanny kills and restarts it, the chunk is
    retried. The run completes with the same bytes."""
    out = tmp_path / "out"
    workers = {"oom": ("--no-nanny",), "limited": ("--memory-limit", "1.5GB")}
    killed = []
    with dask_procs.cluster(tmp_path / "cluster", workers) as cluster:
        with client_of(cluster) as client:
            by_name = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
            client.run(slow_chunks, 0.3, workers=[by_name["oom"]])
            client.run(hog_memory_once, workers=[by_name["limited"]])
            watcher = threading.Thread(
                target=dask_procs.kill_inside_a_chunk,
                args=(client, killed, by_name["oom"], 1200),
                daemon=True,
            )
            watcher.start()
            code = main(
                [
                    str(demo_input),
                    str(out),
                    "group",
                    *FAST,
                    "--dask-scheduler-file",
                    str(cluster.scheduler_file),
                    "--dask-timeout",
                    "60",
                ]
            )
            watcher.join(timeout=5)
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        limited_log = cluster.log("limited")
    assert code == 0
    assert killed, "the worker was not killed inside a chunk"
    assert names == {"limited"}  # the OOM-killed worker stayed dead; the other was restarted
    assert "memory budget" in limited_log, limited_log[-1500:]
    got = results_digest(out)
    assert got == reference, sorted(k for k in reference if reference[k] != got.get(k))
    computed = [json.loads(p.read_text())["ComputedBy"] for p in out.rglob("*_stat-z_statmap.json")]
    assert len(computed) == 4 and all(
        sorted(c for w in who["Workers"] for c in w["Chunks"]) == list(range(5)) for who in computed
    )


# ---- one worker per GPU: the device of each chunk in the sidecars -------------------------
def test_one_worker_per_gpu_records_which_device_computed_which_chunk(tmp_path):
    """Two workers on numba's CUDA simulator, one per "GPU" (CUDA_VISIBLE_DEVICES=0 and 1),
    as README starts them: the chunks equal the CPU engine's, and ComputedBy (the sidecar
    entry, built from the ledger as the stages do) names each chunk's worker and device."""
    from types import SimpleNamespace

    from csale_app.distributed import connect, disconnect
    from csale_app.kernels.engine import CPUBackend
    from csale_app.stats.montecarlo import BackendChunk, computed_by, fwe_call, run_chunked
    from tests.kernels.test_cuda_sim import SIM_PREAMBLE, THRESH, scenarios

    preload = tmp_path / "cudasim_preload.py"  # the simulator fixes of test_cuda_sim
    preload.write_text(SIM_PREAMBLE)
    sim = {"NUMBA_ENABLE_CUDASIM": "1", "CSALE_ALLOW_CUDASIM": "1"}
    workers = {f"gpu{i}": ("--preload", str(preload)) for i in (0, 1)}
    env = {f"gpu{i}": {**sim, "CUDA_VISIBLE_DEVICES": str(i)} for i in (0, 1)}
    plan = scenarios()["uniform"]
    n_iters, chunk = 12, 2
    cpu = run_chunked(n_iters, chunk, BackendChunk(fwe_call, CPUBackend(1), plan, (THRESH,)))
    with dask_procs.cluster(tmp_path / "cluster", workers, env) as cluster:
        address = json.loads(cluster.scheduler_file.read_text())["address"]
        settings = SimpleNamespace(
            device="cuda", gpu_id=None, batch_size="2", mem_gb=None, dask_timeout=60
        )
        executor = connect(address, settings)
        try:
            with client_of(cluster) as client:  # both workers busy: chunks go to both
                client.run(slow_chunks, 0.5)
            ledger: dict = {}
            got = run_chunked(
                n_iters,
                chunk,
                BackendChunk(fwe_call, CPUBackend(1), plan, (THRESH,)),
                executor=executor,
                ledger=ledger,
            )
        finally:
            disconnect(address)
    np.testing.assert_allclose(got["max"], cpu["max"], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(got["size"], cpu["size"])
    np.testing.assert_allclose(got["mass"], cpu["mass"], rtol=1e-5, atol=1e-12)
    who = computed_by(ledger, n_iters, chunk, address)
    assert who["ChunksFromCheckpoints"] == []
    assert sorted(c for w in who["Workers"] for c in w["Chunks"]) == list(range(6))
    devices = {w["Name"]: (w["CUDA_VISIBLE_DEVICES"], w["Device"]) for w in who["Workers"]}
    assert set(devices) == {"gpu0", "gpu1"}, who
    for name, (visible, device) in devices.items():
        assert visible == name[-1] and device.startswith("CUDA GPU 0") and "simulator" in device
    json.dumps(who)  # a sidecar entry


def die_in_chunks() -> None:
    """On a worker: every chunk kills its worker process (as a chunk too large for memory)."""
    from csale_app import distributed as dist

    dist.run_backend_chunk = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)


def test_no_worker_and_a_chunk_that_kills_its_workers_are_one_line_exit_69(
    demo_input, small_chunks, tmp_path, capsys
):
    """A scheduler without workers: exit 69 after --dask-timeout (not a wait for ever). A
    chunk whose workers die more than allowed-failures times (0 here): exit 69 naming it."""
    out = tmp_path / "out"
    no_retry = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with dask_procs.cluster(tmp_path / "empty", scheduler_env=no_retry) as cluster:
        code = main(
            [
                str(demo_input),
                str(out),
                "group",
                *FAST,
                "--dask-timeout",
                "2",
                "--dask-scheduler-file",
                str(cluster.scheduler_file),
            ]
        )
        err = errors(capsys)
        assert code == 69 and len(err) == 1, err
        assert "no worker joined it within 2 s (--dask-timeout)" in err[0]
        cluster.start_worker("w0")
        cluster.wait_for_workers(1)
        with client_of(cluster) as client:
            client.run(die_in_chunks)
        code = main(
            [
                str(demo_input),
                str(out),
                "group",
                *FAST,
                "--dask-timeout",
                "30",
                "--dask-scheduler-file",
                str(cluster.scheduler_file),
            ]
        )
    err = errors(capsys)
    assert code == 69 and len(err) == 1, err
    assert "the workers running permutation chunk" in err[0] and "died 1 time (" in err[0]
    assert "allowed-failures = 0" in err[0] and "finished permutation chunks are kept" in err[0]


# ---- the SLURM batch script of README, with sbatch and srun replaced by local processes ----
SRUN_SHIM = """#!/usr/bin/env bash
# srun for tests: the step's command, --ntasks=N times, as local background processes
n=1
while [ $# -gt 0 ]; do
  case $1 in --ntasks=*) n=${1#*=}; shift;; -*) shift;; *) break;; esac
done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; exit 143' TERM INT
for i in $(seq 0 $((n - 1))); do SLURM_PROCID=$i "$@" & pids+=($!); done
wait
"""
SBATCH_SHIM = """#!/usr/bin/env bash
# sbatch for tests: runs the batch script here, in the foreground (as sbatch --wait)
export SLURM_JOB_ID=$$ SLURM_NTASKS=${SHIM_NTASKS:-2} SLURM_CPUS_PER_TASK=1
exec bash "$@"
"""


def test_slurm_batch_script_runs_with_local_srun(demo_input, reference, tmp_path):
    """scripts/slurm_csale.sh (README) as SLURM would run it: the scheduler and 2 workers
    started with srun, csale-app given the scheduler file; same maps and tables as one
    process, every chunk computed by the script's workers, nothing left running."""
    import shutil
    import subprocess
    import sys

    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("srun", SRUN_SHIM), ("sbatch", SBATCH_SHIM)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    venv_bin = os.path.dirname(sys.executable)
    assert shutil.which("dask", path=venv_bin) and shutil.which("csale-app", path=venv_bin)
    out, scheduler_file = tmp_path / "out", tmp_path / "scheduler.json"
    env = dask_procs.env_with_repo(
        {
            "PATH": os.pathsep.join([str(shims), venv_bin, os.environ.get("PATH", "")]),
            "SCHEDULER_FILE": str(scheduler_file),
            "DASK_TIMEOUT": "120",
        }
    )
    proc = subprocess.Popen(
        [
            "sbatch",
            str(dask_procs.REPO / "scripts" / "slurm_csale.sh"),
            str(demo_input),
            str(out),
            *FAST,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=300)
    finally:
        dask_procs.kill(proc)  # the whole session: scheduler, workers, csale-app
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    assert not scheduler_file.exists()  # removed by the script's cleanup
    got = results_digest(out)
    assert got == reference, sorted(k for k in reference if reference[k] != got.get(k))
    for side in out.rglob("*_stat-z_statmap.json"):
        who = json.loads(side.read_text())["ComputedBy"]
        assert who["Workers"] and who["DaskScheduler"].startswith("tcp://")


def test_readme_shows_the_shipped_slurm_script():
    readme = (dask_procs.REPO / "README.md").read_text()
    script = (dask_procs.REPO / "scripts" / "slurm_csale.sh").read_text()
    section = readme[readme.index("#### A SLURM batch script") :]
    block = section[section.index("```bash\n") + 8 :]
    assert block[: block.index("```\n")] == script
