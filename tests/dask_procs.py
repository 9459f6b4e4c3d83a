"""Real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1 for tests, as an HPC job
starts them (scheduler file, workers pointed at it). Every process is started in its own
session and killed (the whole group: nanny and worker) when the context ends; starts are
bounded by timeouts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120  # workers import numba and csale_app on a shared 2-core machine


def env_with_repo(extra: dict | None = None) -> dict:
    """The environment of a scheduler/worker: this checkout first on PYTHONPATH (workers
    must import the code under test), dask's own logging quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def scheduler_cmd(scheduler_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-dashboard",
        "--scheduler-file",
        str(scheduler_file),
    ]


def worker_cmd(scheduler_file: Path, name: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        "--scheduler-file",
        str(scheduler_file),
        "--host",
        "127.0.0.1",
        "--nthreads",
        "1",
        "--nworkers",
        "1",
        "--no-dashboard",
        "--name",
        name,
        "--death-timeout",
        "60",
        *args,
    ]


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group of ``proc`` (a worker's nanny and the worker it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class Cluster:
    """A scheduler (writing ``scheduler_file``) and named workers, as subprocesses."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = self.folder / "scheduler.json"
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self._logs = []

    def _start(self, cmd: list[str], name: str, env: dict | None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        self._logs.append(log)
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env_with_repo(env),
            start_new_session=True,
        )

    def start_scheduler(self, env: dict | None = None) -> str:
        self.scheduler = self._start(scheduler_cmd(self.scheduler_file), "scheduler", env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                with contextlib.suppress(ValueError):
                    return json.loads(self.scheduler_file.read_text())["address"]
            assert self.scheduler.poll() is None, self.log("scheduler")
            time.sleep(0.1)
        raise TimeoutError(f"no scheduler file after {START_TIMEOUT_S} s")

    def start_worker(self, name: str, *args: str, env: dict | None = None) -> None:
        self.workers[name] = self._start(worker_cmd(self.scheduler_file, name, *args), name, env)

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(
            scheduler_file=str(self.scheduler_file), set_as_default=False, timeout=START_TIMEOUT_S
        ) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT_S)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None:
                kill(proc)
        for log in self._logs:
            log.close()


@contextlib.contextmanager
def cluster(
    folder: Path,
    workers: dict[str, tuple] | None = None,
    env: dict | None = None,
    scheduler_env: dict | None = None,
):
    """A scheduler and ``workers`` (name -> extra ``dask worker`` arguments; ``env``: name ->
    extra environment), killed at the end whatever happens."""
    c = Cluster(folder)
    try:
        c.start_scheduler(scheduler_env)
        for name, args in (workers or {}).items():
            c.start_worker(name, *args, env=(env or {}).get(name))
        if workers:
            c.wait_for_workers(len(workers))
        yield c
    finally:
        c.close()


def results_digest(folder: Path) -> dict[str, str]:
    """Every map and table of a run; JSON sidecars without ``ComputedBy`` (which worker ran
    which chunk), the one entry in which a cluster run's files differ from a local run's.
    Provenance, logs and the report record run times and are left out."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if (
            not p.is_file()
            or p.name in (".csale_provenance.json", "dataset_description.json")
            or p.suffix not in (".gz", ".tsv", ".json")
            or "logs" in p.parts
            or ".csale_work" in p.parts
        ):
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            side = json.loads(data)
            side.pop("ComputedBy", None)
            data = json.dumps(side, sort_keys=True).encode()
        out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


#: C-SALE's cluster FWE needs n_iters >= 1 / voxel_thresh; a small ROI keeps it quick.
FAST = [
    "--n-iters",
    "40",
    "--voxel-thresh",
    "0.05",
    "--nprocs",
    "1",
    "--quiet",
    "--roi-coords=-30,-62,-28",
    "--roi-radius",
    "10",
    "--macm-seed",
    "roi",
    "--min-experiments",
    "5",
    "--studyset-label",
    "flanker",
    "--subsamples",
    "2",
    "--subsample-size",
    "0.5",
]  # subsamples: units side by side
CHUNK = 8  # 5 chunks of 8 permutations: the tree reduction has several levels


def slow_chunks(seconds: float) -> None:
    """On a worker: make each chunk take ``seconds`` longer (0: undo). Tasks name the
    function by module attribute, so the patched one runs."""
    from csale_app import distributed as dist

    original = getattr(dist, "_unpatched_chunk", dist.run_backend_chunk)
    dist._unpatched_chunk = original
    if seconds <= 0:
        dist.run_backend_chunk = original
        return

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    dist.run_backend_chunk = slow


def kill_inside_a_chunk(client, killed: list, worker: str | None = None, tries: int = 600) -> None:
    """SIGKILL a worker process as soon as it runs a C-SALE chunk (``worker``: that worker's
    address only; else the first busy one), as the kernel's OOM killer does; its pid goes to
    ``killed``. Polls the scheduler every 50 ms, ``tries`` times at most."""
    for _ in range(tries):
        for addr, keys in client.processing().items():
            if (worker is None or addr == worker) and any("csale-chunk" in str(k) for k in keys):
                pid = client.run(os.getpid, workers=[addr])[addr]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)
