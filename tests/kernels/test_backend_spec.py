"""The backend is built whole from one frozen BackendSpec (pipeline, API, Dask workers), and
--batch-size is checked once, by the settings parser, without importing numba.cuda."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csale_app.kernels.backend_spec import BackendSpec
from csale_app.settings import OptionValueError, Settings, batch_size

REPO = Path(__file__).resolve().parents[2]


def test_spec_carries_the_run_settings():
    s = Settings(device="cuda", gpu_id=1, nprocs=3, batch_size="64", mem_gb=2.0)
    spec = BackendSpec.from_settings(s)
    assert spec == BackendSpec("cuda", gpu_id=1, n_threads=3, batch_size=64, mem_gb=2.0)
    assert spec.mem_limit_bytes == 2.0 * 2**30
    assert BackendSpec.from_settings(Settings()) == BackendSpec("auto", 0, None, None, None)
    assert BackendSpec.from_settings(Settings()).mem_limit_bytes is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.batch_size = 8  # type: ignore[misc]
    assert {spec: 1}[BackendSpec.from_settings(s)] == 1  # hashable: the workers' cache key


def test_batch_size_is_checked_by_the_settings_parser():
    assert batch_size("auto") == "auto" and batch_size("08") == "8"
    for bad in ("0", "-3", "big", "1.5"):
        with pytest.raises(OptionValueError):
            batch_size(bad)
    from csale_app import ALE

    with pytest.raises(ValueError, match="batch_size"):
        ALE(batch_size=0)


def test_cpu_backend_never_imports_numba_cuda():
    code = (
        "import sys\n"
        "from csale_app.kernels.backend_spec import BackendSpec\n"
        "from csale_app.kernels.device import make_backend\n"
        "import csale_app.pipeline\n"
        "b = make_backend(BackendSpec('cpu', n_threads=1, batch_size=4, mem_gb=1.0))\n"
        "assert b.name == 'cpu' and b.fallback_reason is None, b\n"
        "print(sorted(m for m in sys.modules if m.startswith('numba.cuda')))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_workers_build_their_backend_from_the_run_spec():
    from types import SimpleNamespace

    from csale_app import distributed

    settings = SimpleNamespace(device="cpu", gpu_id=None, nprocs=7, batch_size="2", mem_gb=None)
    spec = distributed._spec(settings)
    # the run's device and batch size; each worker's own --nthreads, not the client's
    assert spec == BackendSpec("cpu", gpu_id=0, n_threads=None, batch_size=2)
    assert distributed._spec(None) == BackendSpec("cpu", n_threads=None)
    backend = distributed.worker_backend(spec)
    assert backend.name == "cpu" and backend.n_threads == 1  # off a worker: 1 thread
    assert distributed.worker_backend(spec) is backend  # made once per worker process
