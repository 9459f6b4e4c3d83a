"""The report's work in forked processes: figures drawn side by side, and a report process
that imports the plotting stack while the run computes.

Drawing is Python code that holds the GIL (matplotlib, nilearn), so threads would not
overlap; a forked copy shares what is already imported and the data in memory without
pickling any image. Every copy sends back what it computed and the log records it made
(the run log and the console then read as if one process had done the work), and leaves with
``os._exit`` (no ``atexit`` handler or buffered stream of the run runs twice). Whatever a
copy does not return (it failed, it was killed) is done again in this process, so the
results are never other than those of doing the work here. Without ``os.fork`` (not POSIX)
the work is done here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

LOG = logging.getLogger(__name__)
LOGGER = "csale_app"  # the records copied back: the run log's logger and its children


class _Collect(logging.Handler):
    """Keeps the records of a forked copy, made picklable, to be replayed by its parent."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.records.append(record)


def _collect_logs() -> _Collect:
    """In a fresh copy: its records are collected, not written by the handlers it inherited
    (the parent writes them when it replays them)."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = _Collect()
    logger.addHandler(handler)
    # everything: the parent keeps what its own levels let through when it replays
    logger.setLevel(logging.DEBUG)
    return handler


def _replay(records) -> None:
    for record in records or []:
        with contextlib.suppress(Exception):
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def _answer(fd: int, value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


def run_parallel(tasks: list[Callable[[], object]], processes: int) -> list:
    """``[t() for t in tasks]``, shared among ``processes`` processes: this one and
    ``processes - 1`` forked copies of it, each taking the next task not yet taken."""
    processes = min(int(processes), len(tasks))
    if processes <= 1 or not hasattr(os, "fork"):
        return [t() for t in tasks]
    import multiprocessing

    taken = multiprocessing.get_context("fork").Value("i", 0)

    def work() -> dict:
        done = {}
        while True:
            with taken.get_lock():
                i = taken.value
                taken.value += 1
            if i >= len(tasks):
                return done
            done[i] = tasks[i]()

    _flush_streams()
    copies = []
    for _ in range(processes - 1):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the copy: never returns into the caller's code
            status = 1
            try:
                os.close(read_fd)
                logs = _collect_logs()
                done = work()
                _answer(write_fd, (done, logs.records))
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        copies.append((pid, read_fd))
    answers = []
    try:
        results = work()
    finally:  # always collect the copies (also when a task raised here): none is left
        for pid, read_fd in copies:
            answers.append(_read_all(read_fd))
            os.waitpid(pid, 0)
    for data in answers:
        try:
            done, records = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001  nothing usable: done again below
            LOG.debug("report: a drawing process returned nothing usable: %s", exc)
            continue
        _replay(records)
        results.update(done)
    missing = [i for i in range(len(tasks)) if i not in results]
    if missing:
        LOG.debug("report: %d figure(s) drawn again here (a drawing process failed)", len(missing))
    for i in missing:
        results[i] = tasks[i]()
    return [results[i] for i in range(len(tasks))]


def _warm_up() -> None:
    """What every report needs before its first figure: the plotting stack, the page
    templates, the background image, the glass brain outlines, the viewer's template sprite
    and SUITPy's flatmap module (all shared with the drawing copies)."""
    from . import build, figures, flatmap, viewer

    import nilearn.plotting  # noqa: F401  (figures imports it only when drawing)

    build._environment().get_template("report.html.j2")
    figures.background_image()
    figures.read_outlines()
    viewer.warm_up()
    try:
        flatmap.suit_flatmap()
    except ImportError:  # no SUITPy: the flatmap section says so when drawn
        pass


class ReportProcess:
    """A copy of the run forked at its start that imports and prepares the report's
    plotting stack (about 2-3 s of imports) on a core that the run's single-threaded start
    leaves idle, then waits; :meth:`build` hands it the finished outputs to report on.

    The copy holds no lock and writes nothing until :meth:`build`; when the run ends in
    any other way, it sees the end of its job pipe and leaves (:meth:`close`, also at
    garbage collection and at the parent's exit).
    """

    def __init__(self):
        self.pid: int | None = None
        self._job_fd: int | None = None
        self._result_fd: int | None = None
        if not hasattr(os, "fork"):
            return
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        _flush_streams()
        pid = os.fork()
        if pid == 0:
            os.close(job_w)
            os.close(res_r)
            self._serve(job_r, res_w)  # never returns
        os.close(job_r)
        os.close(res_w)
        self.pid, self._job_fd, self._result_fd = pid, job_w, res_r
        self._closer = weakref.finalize(self, _stop, pid, job_w, res_r)

    @staticmethod
    def _serve(job_fd: int, result_fd: int) -> None:
        status = 1
        try:
            logs = _collect_logs()
            with contextlib.suppress(Exception):
                _warm_up()
            data = _read_all(job_fd)
            if data:  # empty: the run ended without a report
                from .build import build_report

                output_dir, context, figure_dir = pickle.loads(data)
                try:
                    path = build_report(output_dir, context, figure_dir=figure_dir)
                    answer = ("ok", str(path))
                except Exception as exc:  # noqa: BLE001  redone (and raised) by the parent
                    answer = ("failed", f"{type(exc).__name__}: {exc}")
                _answer(result_fd, (answer, logs.records))
            status = 0
        finally:
            os._exit(status)

    def build(self, output_dir: Path, context: dict, figure_dir: Path | None) -> Path:
        """The report, built by the copy; if the copy cannot (it failed, it is gone, the
        job does not pickle), built here as :func:`.build.build_report` would (this
        process imports the plotting stack only then)."""
        if self.pid is None:
            return _build_here(output_dir, context, figure_dir)
        answer, records = None, []
        try:
            job = pickle.dumps(
                (Path(output_dir), context, figure_dir), protocol=pickle.HIGHEST_PROTOCOL
            )
            with os.fdopen(self._job_fd, "wb") as pipe:
                self._job_fd = None
                pipe.write(job)
            fd, self._result_fd = self._result_fd, None
            data = _read_all(fd)
            if data:
                answer, records = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001  built here instead
            LOG.debug("report: the report process could not build it: %s", exc)
        finally:
            self.close()
        _replay(records)
        if answer and answer[0] == "ok":
            return Path(answer[1])
        if answer:
            LOG.debug("report: the report process failed (%s); building it here", answer[1])
        return _build_here(output_dir, context, figure_dir)

    def close(self) -> None:
        """Reap the copy; one that was given no job (the run ended otherwise) is stopped
        first: it holds nothing and has written nothing."""
        if self.pid is None:
            return
        self._closer.detach()
        _stop(self.pid, self._job_fd, self._result_fd)
        self.pid = self._job_fd = self._result_fd = None


def _build_here(output_dir, context, figure_dir) -> Path:
    from .build import build_report

    return build_report(output_dir, context, figure_dir=figure_dir)


def _stop(pid: int, job_fd: int | None, result_fd: int | None) -> None:
    if job_fd is not None:  # never handed a job: it would only import, then leave
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for fd in (job_fd, result_fd):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def start_report_process(nprocs: int | None) -> ReportProcess | None:
    """A :class:`ReportProcess` unless the run is to use one CPU (``--nprocs 1``, or one
    CPU available)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    if available < 2 or nprocs == 1 or not hasattr(os, "fork"):
        return None
    return ReportProcess()
