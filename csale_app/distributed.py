"""Permutation chunks on a Dask cluster (``--dask-scheduler ADDRESS`` or
``--dask-scheduler-file PATH``, resolved by :mod:`csale_app.dask_client`).

Imported only when a cluster is given: the package never imports dask otherwise.
Needs the ``distributed`` extra (``pip install 'csale-app[distributed]'``) here and on the
workers, and the same csale_app version on every worker (checked when connecting).

Work units are the permutation chunks of :mod:`csale_app.stats.montecarlo`: each is a pure
function of (seed, first permutation, count), so where it runs does not change a number.

- The null plan (grid, kernels, experiments, sampler) and the chunk's fixed arguments are
  one task per analysis (:func:`same_value`), fetched by each worker once; a chunk task
  carries only (index, start, count). Not scattered data: that is lost for good when every
  worker holding it dies, and the scheduler can recompute a task.
- Each chunk returns who computed it (:func:`where_computed`: worker, host, device,
  CUDA_VISIBLE_DEVICES) with its arrays; the caller's ledger becomes the sidecars'
  ``ComputedBy``.
- Each worker makes its own backend once (:func:`worker_backend`): numba on the worker's
  threads (``dask worker --nthreads N``; one chunk at a time per worker process, all N
  threads on it), or the worker's GPU with ``--device cuda``/``auto`` (one GPU per worker:
  start one worker per device, e.g. with ``CUDA_VISIBLE_DEVICES``).
- ALE chunks are gathered as they finish and concatenated in chunk order; C-SALE's
  per-chunk top-K lists are merged on the workers as a tree of adjacent ranges (the merge
  is associative and keeps equal values in permutation order, so any tree gives the
  sequential result).
- Finished chunks are checkpointed by the caller as without a cluster. A lost scheduler
  (or a chunk whose workers keep dying: KilledWorker) ends the run with one line, exit 69
  (:class:`~csale_app.errors.ServiceUnavailableError`), and a rerun resumes; a killed
  worker's tasks are recomputed by Dask (same numbers), costing only its unfinished chunks.
- Connecting waits at most ``--dask-timeout`` for the scheduler and for a first worker; a
  client whose scheduler is gone is closed without waiting (:func:`_close_quickly`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import uuid
from concurrent.futures import CancelledError
from dataclasses import replace

from .errors import ServiceUnavailableError, UsageError
from .kernels.backend_spec import BackendSpec

LOG = logging.getLogger(__name__)
#: Seconds to wait for the scheduler before giving up (exit 69), unless --dask-timeout.
CONNECT_TIMEOUT_S = 20
_CLIENTS: dict[str, object] = {}  # address -> distributed.Client, one per process


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---- on the workers ---------------------------------------------------------------------
_LOCK = threading.Lock()  # one chunk at a time per worker process (numba / GPU)
_BACKENDS: dict[BackendSpec, object] = {}


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except Exception:  # not on a worker (called directly in tests)
        return 1


def worker_backend(spec: BackendSpec):
    """The backend of this worker process for ``spec`` (made once, then reused); a spec
    without ``n_threads`` takes the worker's ``--nthreads``."""
    backend = _BACKENDS.get(spec)
    if backend is None:
        from .kernels.device import make_backend

        backend = make_backend(
            spec if spec.n_threads else replace(spec, n_threads=_worker_threads())
        )
        _BACKENDS[spec] = backend
    return backend


def where_computed(device: str | None) -> dict:
    """Which worker (address, name, host), device and CUDA_VISIBLE_DEVICES ran a chunk: the
    sidecars' ``ComputedBy`` (one worker per GPU, each with its own CUDA_VISIBLE_DEVICES)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        address, name = worker.address, str(worker.name)
    except Exception:  # not on a worker (called directly in tests)
        address, name = "local", "local"
    return {
        "worker": address,
        "name": name,
        "host": socket.gethostname(),
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def run_backend_chunk(
    spec: BackendSpec, payload: tuple, index: int, start: int, count: int
) -> tuple:
    """One chunk on a worker: ``payload`` = (call, plan, args), sent once per worker.
    Returns ``(((index, where),), arrays)``: the arrays and who computed them."""
    call, plan, args = payload
    with _LOCK:
        backend = worker_backend(spec)
        arrays = call(backend, plan, start, count, *args)
    return ((index, where_computed(backend.describe())),), arrays


def run_callable(compute, index: int, start: int, count: int) -> tuple:
    """One chunk of a plain callable (shipped with its closure), as :func:`run_backend_chunk`."""
    with _LOCK:
        arrays = compute(start, count)
    return ((index, where_computed(None)),), arrays


def same_value(value):
    """A task that returns its argument (data the scheduler can recompute)."""
    return value


def merge_states(reduce, left: tuple, right: tuple) -> tuple:
    """One node of the tree reduction: ``left`` holds the earlier permutations; each side is
    (records of who computed its chunks, state)."""
    return left[0] + right[0], reduce(left[1], right[1])


def _worker_version() -> str:
    from ._version import __version__

    return __version__


# ---- on the client ----------------------------------------------------------------------
class DaskExecutor:
    """Runs chunks on the cluster behind ``client`` (see the module docstring)."""

    def __init__(self, client, spec: BackendSpec, address: str = "", timeout: float = 20.0):
        from .tasks import ClientLock

        self.client = client
        self.spec = spec
        self.address = address or str(getattr(client.scheduler, "address", ""))
        self.timeout = timeout
        self.lock = ClientLock()  # studysets / MACM seeds side by side (csale_app.tasks)

    def _waiting(self, iterator):
        """Iterate, giving other client threads their turn while blocked on the cluster."""
        while True:
            with self.lock.released():
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item

    def describe(self) -> str:
        try:
            workers = self.client.scheduler_info().get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            return (
                f"Dask cluster {self.client.scheduler.address}: {len(workers)} workers, "
                f"{threads} threads"
            )
        except Exception:  # pragma: no cover - informational only
            return "Dask cluster"

    @contextlib.contextmanager
    def _cluster_errors(self, futures: dict):
        """Turn a lost scheduler or a chunk whose workers keep dying into one line (exit 69);
        a task's own error (a bug, a DeviceError on a worker) passes unchanged. The
        caller has checkpointed every finished chunk already."""
        try:
            yield
        except ServiceUnavailableError:
            raise
        except (Exception, CancelledError) as exc:
            killed = _killed_worker(exc)
            if killed is not None:
                raise ServiceUnavailableError(
                    f"--dask-scheduler {self.address}: {killed}; finished permutation chunks "
                    "are kept, give the workers more memory (dask worker --memory-limit) or "
                    "lower --batch-size, and run the same command again"
                ) from None
            lost = self.client.status != "running" or _connection_lost(exc)
            if not lost and not isinstance(exc, CancelledError):
                raise  # the task's own error
            LOG.debug("Dask cluster failure", exc_info=True)
            what = (
                "lost the Dask scheduler mid-run"
                if lost
                else f"the cluster cancelled permutation chunks ({_one_line(exc)})"
            )
            if lost:
                _forget(self.client)
            raise ServiceUnavailableError(
                f"--dask-scheduler {self.address}: {what}; finished "
                "permutation chunks are kept in the work folder: run the same command again "
                "(on a new cluster, or without --dask-scheduler) to resume with identical "
                "results"
            ) from None
        finally:
            if futures and self.client.status == "running":
                try:
                    self.client.cancel(list(futures))
                except Exception:  # pragma: no cover - the cluster is going away
                    pass

    def _data(self, value, what: str):
        """A future holding ``value`` that the scheduler can recompute: a task returning it,
        not scattered data (which is lost for good when every worker holding it dies, e.g.
        all of them killed for memory, and would cancel the chunks that need it). Workers
        fetch it from each other once, as with a broadcast."""
        return self.client.submit(
            same_value, value, pure=False, key=f"csale-{what}-{uuid.uuid4().hex[:8]}"
        )

    def _submitter(self, compute):
        """submit(index, start, count, key) -> future of ``(records, arrays)``."""
        from .stats.montecarlo import BackendChunk

        if isinstance(compute, BackendChunk):
            payload = self._data((compute.call, compute.plan, compute.args), "payload")
            return lambda index, start, count, key: self.client.submit(
                run_backend_chunk, self.spec, payload, index, start, count, key=key, pure=False
            )
        return lambda index, start, count, key: self.client.submit(
            run_callable, compute, index, start, count, key=key, pure=False
        )

    def map_chunks(self, compute, todo, ledger: dict | None = None):
        """Yield (index, result) for each (index, start, count) of ``todo`` as it finishes;
        ``ledger[index]`` gets who computed it (:func:`where_computed`)."""
        if not todo:
            return
        from distributed import as_completed

        futures: dict = {}
        with self._cluster_errors(futures):
            submit = self._submitter(compute)
            tag = uuid.uuid4().hex[:8]
            for index, start, count in todo:
                futures[submit(index, start, count, f"csale-chunk-{tag}-{index}")] = index
            for fut in self._waiting(as_completed(list(futures), loop=self.client.loop)):
                records, arrays = fut.result()
                futures.pop(fut)
                fut.release()
                if ledger is not None:
                    ledger.update(records)
                yield records[0][0], arrays

    def reduce_chunks(
        self,
        compute,
        reduce,
        todo,
        state,
        first,
        on_chunk=None,
        on_prefix=None,
        ledger: dict | None = None,
    ):
        """Fold every chunk of ``todo`` (consecutive indices from ``first``) into ``state``
        (the fold of chunks 0..first-1, or None) with the associative ``reduce``: adjacent
        finished ranges are merged on the workers; ``on_prefix(last, value)`` receives the
        fold of chunks 0..last each time that range grows; the whole fold is returned.
        ``ledger[index]`` gets who computed each chunk folded into a prefix."""
        if not todo:
            return state
        span: dict = {}  # future -> (lo, hi, is_chunk): chunks lo..hi-1
        with self._cluster_errors(span):
            return self._tree_reduce(
                compute, reduce, todo, state, first, on_chunk, on_prefix, ledger, span
            )

    def _tree_reduce(self, compute, reduce, todo, state, first, on_chunk, on_prefix, ledger, span):
        from distributed import as_completed

        submit = self._submitter(compute)
        tag = uuid.uuid4().hex[:8]
        n_total = todo[-1][0] + 1
        ready: dict[int, tuple[int, object]] = {}  # lo -> (hi, future), not being merged
        ready_end: dict[int, int] = {}  # hi -> lo
        for index, start, count in todo:
            span[submit(index, start, count, f"csale-chunk-{tag}-{index}")] = (
                index,
                index + 1,
                True,
            )
        if state is not None:
            fut0 = self._data(((), state), "resumed")
            ready[0], ready_end[first] = (first, fut0), 0
        pending = as_completed(list(span), loop=self.client.loop)
        n_merge = 0
        for fut in self._waiting(iter(pending)):
            lo, hi, is_chunk = span.pop(fut)
            if fut.status != "finished":
                fut.result()  # raises the task's error (or CancelledError)
            if is_chunk and on_chunk is not None:
                on_chunk(lo)
            if lo == 0:
                value = fut.result() if (on_prefix is not None or hi == n_total) else None
                if value is not None and ledger is not None:
                    ledger.update(value[0])
                if on_prefix is not None:
                    on_prefix(hi - 1, value[1])
                if hi == n_total:
                    return value[1]
            left = ready_end.pop(lo, None)
            right = ready.pop(hi, None)
            if left is not None:
                l_hi, l_fut = ready.pop(left)
                a, b, new = l_fut, fut, (left, hi)
                if right is not None:  # keep the right neighbour for later
                    ready[hi] = right
                    ready_end[right[0]] = hi
            elif right is not None:
                ready_end.pop(right[0])
                a, b, new = fut, right[1], (lo, right[0])
            else:
                ready[lo], ready_end[hi] = (hi, fut), lo
                continue
            n_merge += 1
            merged = self.client.submit(
                merge_states,
                reduce,
                a,
                b,
                pure=False,
                key=f"csale-merge-{tag}-{new[0]}-{new[1]}-{n_merge}",
            )
            span[merged] = (new[0], new[1], False)
            pending.add(merged)
        raise RuntimeError("tree reduction ended without covering every chunk")  # pragma: no cover


def _killed_worker(exc: BaseException) -> str | None:
    """'chunk ... killed N workers' for distributed's KilledWorker, else None."""
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, KilledWorker):
        return None
    task = str(getattr(exc, "task", "a task"))
    chunk = task.rsplit("-", 1)[-1] if task.startswith("csale-chunk-") else None
    what = f"permutation chunk {chunk}" if chunk is not None else f"task {task}"
    n = getattr(exc, "allowed_failures", None)
    times = f"{n + 1} time{'s' if n else ''}" if isinstance(n, int) else "repeatedly"
    return (
        f"the workers running {what} died {times} (out of memory, or killed; "
        f"distributed.scheduler.allowed-failures = {n})"
    )


def _connection_lost(exc: BaseException) -> bool:
    reason = str(getattr(exc, "reason", "") or "")
    return "connection-lost" in reason or "lost the connection" in str(exc).lower()


def _spec(settings) -> BackendSpec:
    """The workers' backend spec: the run's device, GPU, batch size and memory cap, and each
    worker's own thread count (``dask worker --nthreads``), not the client's --nprocs."""
    if settings is None:
        return BackendSpec(device="cpu", n_threads=None)
    return replace(BackendSpec.from_settings(settings), n_threads=None)


def connect(address: str, settings=None) -> DaskExecutor:
    """An executor on the Dask scheduler at ``address`` (e.g. tcp://host:8786).

    Raises UsageError (exit 64) when dask.distributed is not installed or the workers run
    another csale_app version, ServiceUnavailableError (exit 69) when no scheduler answers
    within ``settings.dask_timeout`` seconds or no worker joins it in that time. One client
    per address and process (reused by later runs; see :func:`disconnect`)."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError(
            "--dask-scheduler needs dask.distributed: pip install "
            "'csale-app[distributed]' (here and on the workers)"
        ) from None
    from .dask_client import route_dask_logging

    route_dask_logging()
    spec = _spec(settings)
    timeout = float(getattr(settings, "dask_timeout", None) or CONNECT_TIMEOUT_S)
    cached = _CLIENTS.get(address)
    if cached is not None and cached.status == "running":
        return DaskExecutor(cached, spec, address, timeout)
    client = Client.__new__(Client)  # kept, so that a failed start is closed here, quickly
    try:
        client.__init__(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        LOG.debug("cannot connect to %s", address, exc_info=True)
        _close_quickly(client)
        cause = "" if "timed out" in str(exc).lower() else f" ({_one_line(exc)})"
        raise ServiceUnavailableError(
            f"--dask-scheduler {address}: no Dask scheduler answered within {timeout:g} s "
            f"(--dask-timeout){cause}"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception:
        _close_quickly(client)
        raise ServiceUnavailableError(
            f"--dask-scheduler {address}: the scheduler answered but no worker joined it "
            f"within {timeout:g} s (--dask-timeout); start workers (dask worker {address}) "
            "or wait longer with a larger --dask-timeout"
        ) from None
    from ._version import __version__

    try:
        versions = client.run(_worker_version)
    except Exception as exc:
        _close_quickly(client)
        raise UsageError(
            f"--dask-scheduler {address}: the workers cannot run csale_app "
            f"({_one_line(exc)}); install the same csale-app on every "
            "worker"
        ) from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        _close_quickly(client)
        raise UsageError(
            f"--dask-scheduler {address}: workers run csale_app "
            f"{', '.join(other)}, this is {__version__}; results would not be "
            "identical"
        )
    executor = DaskExecutor(client, spec, address, timeout)
    _CLIENTS[address] = client
    LOG.info("permutations run on %s", executor.describe())
    return executor


def _close_quickly(client, timeout: float = 2.0) -> None:
    """Close ``client`` without waiting longer than ``timeout`` (a client whose scheduler is
    gone would otherwise wait twice its connection timeout, then print a traceback from
    ``__del__``); a close that cannot finish is left to the daemon thread."""

    def close():
        try:
            client.close(timeout=timeout)
        except BaseException:  # noqa: BLE001 - the cluster is gone; nothing to report
            LOG.debug("closing the Dask client", exc_info=True)

    worker = threading.Thread(target=close, daemon=True, name="csale-dask-close")
    worker.start()
    worker.join(timeout + 1.0)
    client.status = "closed"  # __del__ (at exit) then does nothing


def _forget(client) -> None:
    for key, cached in list(_CLIENTS.items()):
        if cached is client:
            _CLIENTS.pop(key, None)
    _close_quickly(client)


def disconnect(address: str | None = None) -> None:
    """Close this process's client of ``address`` (every client when None)."""
    for key in [address] if address is not None else list(_CLIENTS):
        client = _CLIENTS.pop(key, None)
        if client is not None:
            _close_quickly(client)


atexit.register(disconnect)
