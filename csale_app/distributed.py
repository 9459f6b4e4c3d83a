"""Permutation chunks on a Dask cluster (``--dask-scheduler ADDRESS``).

Imported only when ``--dask-scheduler`` is given: the package never imports dask otherwise.
Needs the ``distributed`` extra (``pip install 'csale-app[distributed]'``) here and on the
workers, and the same csale_app version on every worker (checked when connecting).

Work units are the permutation chunks of :mod:`csale_app.stats.montecarlo`: each is a pure
function of (seed, first permutation, count), so where it runs does not change a number.

- The null plan (grid, kernels, experiments, sampler) and the chunk's fixed arguments are
  sent to every worker once per analysis (``client.scatter(..., broadcast=True)``); a task
  carries only (start, count).
- Each worker makes its own backend once (:func:`worker_backend`): numba on the worker's
  threads (``dask worker --nthreads N``; one chunk at a time per worker process, all N
  threads on it), or the worker's GPU with ``--device cuda``/``auto`` (one GPU per worker:
  start one worker per device, e.g. with ``CUDA_VISIBLE_DEVICES``).
- ALE chunks are gathered as they finish and concatenated in chunk order; C-SALE's
  per-chunk top-K lists are merged on the workers as a tree of adjacent ranges (the merge
  is associative and keeps equal values in permutation order, so any tree gives the
  sequential result).
- Finished chunks are checkpointed by the caller as without a cluster, so a rerun after a
  lost scheduler or client resumes; a killed worker's tasks are recomputed by Dask (same
  numbers), costing only its unfinished chunks.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from dataclasses import dataclass

from .errors import MissingInputError, UsageError

LOG = logging.getLogger(__name__)
#: Seconds to wait for the scheduler before giving up (exit 66).
CONNECT_TIMEOUT_S = 20
_CLIENTS: dict[str, object] = {}  # address -> distributed.Client, one per process


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker builds its backend (from the run's settings)."""

    device: str = "cpu"
    gpu_id: int | None = None
    batch_size: str = "auto"
    mem_gb: float | None = None
    n_threads: int | None = None  # None: the worker's --nthreads


# ---- on the workers ---------------------------------------------------------------------
_LOCK = threading.Lock()  # one chunk at a time per worker process (numba / GPU)
_BACKENDS: dict[WorkerSpec, object] = {}


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except Exception:  # not on a worker (called directly in tests)
        return 1


def worker_backend(spec: WorkerSpec):
    """The backend of this worker process for ``spec`` (made once, then reused)."""
    backend = _BACKENDS.get(spec)
    if backend is None:
        from .kernels.device import select_backend

        threads = spec.n_threads or _worker_threads()
        backend = select_backend(spec.device, spec.gpu_id, threads, spec.batch_size)
        if getattr(backend, "name", "") == "cuda" and spec.mem_gb:
            backend.mem_limit_bytes = spec.mem_gb * 2**30
        _BACKENDS[spec] = backend
    return backend


def run_backend_chunk(spec: WorkerSpec, payload: tuple, start: int, count: int) -> dict:
    """One chunk on a worker: ``payload`` = (call, plan, args), sent once per worker."""
    call, plan, args = payload
    with _LOCK:
        return call(worker_backend(spec), plan, start, count, *args)


def run_callable(compute, start: int, count: int) -> dict:
    """One chunk of a plain callable (shipped with its closure)."""
    with _LOCK:
        return compute(start, count)


def merge_states(reduce, left: dict, right: dict) -> dict:
    """One node of the tree reduction: ``left`` holds the earlier permutations."""
    return reduce(left, right)


def _worker_version() -> str:
    from ._version import __version__

    return __version__


# ---- on the client ----------------------------------------------------------------------
class DaskExecutor:
    """Runs chunks on the cluster behind ``client`` (see the module docstring)."""

    def __init__(self, client, spec: WorkerSpec):
        from .tasks import ClientLock

        self.client = client
        self.spec = spec
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
            return (f"Dask cluster {self.client.scheduler.address}: {len(workers)} workers, "
                    f"{threads} threads")
        except Exception:  # pragma: no cover - informational only
            return "Dask cluster"

    def _submitter(self, compute):
        """(function, first argument) for each chunk task of ``compute``."""
        from .stats.montecarlo import BackendChunk

        if isinstance(compute, BackendChunk):
            [payload] = self.client.scatter([(compute.call, compute.plan, compute.args)],
                                            broadcast=True, hash=False)
            return lambda start, count, key: self.client.submit(
                run_backend_chunk, self.spec, payload, start, count, key=key, pure=False)
        return lambda start, count, key: self.client.submit(
            run_callable, compute, start, count, key=key, pure=False)

    def map_chunks(self, compute, todo):
        """Yield (index, result) for each (index, start, count) of ``todo`` as it finishes."""
        if not todo:
            return
        from distributed import as_completed

        submit = self._submitter(compute)
        tag = uuid.uuid4().hex[:8]
        futures = {submit(start, count, f"csale-chunk-{tag}-{index}"): index
                   for index, start, count in todo}
        try:
            for fut in self._waiting(as_completed(futures, loop=self.client.loop)):
                arrays = fut.result()
                index = futures.pop(fut)
                fut.release()
                yield index, arrays
        finally:
            if futures:
                self.client.cancel(list(futures))

    def reduce_chunks(self, compute, reduce, todo, state, first, on_chunk=None,
                      on_prefix=None):
        """Fold every chunk of ``todo`` (consecutive indices from ``first``) into ``state``
        (the fold of chunks 0..first-1, or None) with the associative ``reduce``: adjacent
        finished ranges are merged on the workers; ``on_prefix(last, value)`` receives the
        fold of chunks 0..last each time that range grows; the whole fold is returned."""
        if not todo:
            return state
        from distributed import as_completed

        submit = self._submitter(compute)
        tag = uuid.uuid4().hex[:8]
        n_total = todo[-1][0] + 1
        span: dict = {}  # future -> (lo, hi, is_chunk): chunks lo..hi-1
        ready: dict[int, tuple[int, object]] = {}  # lo -> (hi, future), not being merged
        ready_end: dict[int, int] = {}  # hi -> lo
        for index, start, count in todo:
            span[submit(start, count, f"csale-chunk-{tag}-{index}")] = (index, index + 1, True)
        if state is not None:
            [fut0] = self.client.scatter([state], hash=False)
            ready[0], ready_end[first] = (first, fut0), 0
        pending = as_completed(list(span), loop=self.client.loop)
        n_merge = 0
        try:
            for fut in self._waiting(iter(pending)):
                lo, hi, is_chunk = span.pop(fut)
                if fut.status != "finished":
                    fut.result()  # raises the task's error (or CancelledError)
                if is_chunk and on_chunk is not None:
                    on_chunk(lo)
                if lo == 0:
                    value = fut.result() if (on_prefix is not None or hi == n_total) else None
                    if on_prefix is not None:
                        on_prefix(hi - 1, value)
                    if hi == n_total:
                        return value
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
                merged = self.client.submit(merge_states, reduce, a, b, pure=False,
                                            key=f"csale-merge-{tag}-{new[0]}-{new[1]}-{n_merge}")
                span[merged] = (new[0], new[1], False)
                pending.add(merged)
        finally:
            if span:
                self.client.cancel(list(span))
        raise RuntimeError("tree reduction ended without covering every chunk")  # pragma: no cover

def _spec(settings) -> WorkerSpec:
    if settings is None:
        return WorkerSpec()
    return WorkerSpec(device=str(getattr(settings, "device", "cpu") or "cpu"),
                      gpu_id=getattr(settings, "gpu_id", None),
                      batch_size=str(getattr(settings, "batch_size", "auto")),
                      mem_gb=getattr(settings, "mem_gb", None))


def connect(address: str, settings=None) -> DaskExecutor:
    """An executor on the Dask scheduler at ``address`` (e.g. tcp://host:8786).

    Raises UsageError (exit 64) when dask.distributed is not installed or the workers run
    another csale_app version, MissingInputError (exit 66) when the scheduler cannot be
    reached. One client per address and process (reused by later runs; see
    :func:`disconnect`)."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--dask-scheduler needs dask.distributed: pip install "
                         "'csale-app[distributed]' (here and on the workers)") from None
    spec = _spec(settings)
    cached = _CLIENTS.get(address)
    if cached is not None and cached.status == "running":
        return DaskExecutor(cached, spec)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as exc:
        raise MissingInputError(f"--dask-scheduler {address}: cannot reach the Dask "
                                f"scheduler ({_one_line(exc)})") from None
    from ._version import __version__

    try:
        versions = client.run(_worker_version)
    except Exception as exc:
        client.close()
        raise UsageError(f"--dask-scheduler {address}: the workers cannot run csale_app "
                         f"({_one_line(exc)}); install the same csale-app on every "
                         "worker") from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        client.close()
        raise UsageError(f"--dask-scheduler {address}: workers run csale_app "
                         f"{', '.join(other)}, this is {__version__}; results would not be "
                         "identical")
    executor = DaskExecutor(client, spec)
    _CLIENTS[address] = client
    LOG.info("permutations run on %s", executor.describe())
    return executor


def disconnect(address: str | None = None) -> None:
    """Close this process's client of ``address`` (every client when None)."""
    for key in [address] if address is not None else list(_CLIENTS):
        client = _CLIENTS.pop(key, None)
        if client is not None:
            try:
                client.close()
            except Exception:  # pragma: no cover
                pass


atexit.register(disconnect)
