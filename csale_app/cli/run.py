"""Entry point: parse, run the pipeline, map errors to BIDS-App exit codes (one line each)."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from ..errors import (
    EXIT_CANT_CREATE,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    WRITE_ERRNOS,
    CsaleError,
    display_path,
    output_error,
    write_cause,
)
from .. import interrupt
from ..settings import Settings
from .parser import parse_settings

LOG = logging.getLogger(__name__)


class LogFileHandler(logging.FileHandler):
    """The run log: never prints "--- Logging error ---" tracebacks on stderr. A failed
    write (disk full, file size limit) stops this handler; the run goes on and the
    output writes themselves report the fault (exit 73)."""

    failed: OSError | None = None

    def handleError(self, record) -> None:  # noqa: N802 - logging API
        exc = sys.exc_info()[1]
        self.failed = exc if isinstance(exc, OSError) else OSError(str(exc))
        self.setLevel(logging.CRITICAL + 1)


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning for a run: library warnings (numpy RuntimeWarnings, numba)
    go to the log file only, never to stderr."""
    LOG.debug("%s: %s (%s:%s)", category.__name__, message, filename, lineno)


def close_handlers(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def setup_logging(settings: Settings, output_dir: Path | None) -> Path | None:
    """Console handler now; with ``output_dir``, also OUTPUT_DIR/logs/<time>.log, which
    receives the records buffered since the start of the run."""
    root = logging.getLogger("csale_app")
    buffered = [h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)]
    close_handlers_except = buffered[0] if buffered else None
    for h in list(root.handlers):
        if h is not close_handlers_except:
            root.removeHandler(h)
            h.close()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    level = (
        logging.WARNING
        if settings.quiet
        else (
            logging.INFO
            if settings.verbose == 1
            else logging.DEBUG
            if settings.verbose >= 2
            else logging.WARNING
        )
    )
    # records logged with extra={"console": True} (the device line) show at the default
    # verbosity too; --quiet hides them
    console.setLevel(min(level, logging.INFO))
    console.addFilter(
        lambda r: r.levelno >= level or (getattr(r, "console", False) and not settings.quiet)
    )
    console.setFormatter(logging.Formatter("csale-app: %(levelname)s: %(message)s"))
    root.addHandler(console)
    if output_dir is None:
        if close_handlers_except is None:
            root.addHandler(logging.handlers.MemoryHandler(100000, flushLevel=logging.CRITICAL + 1))
        return None
    try:
        logs = output_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = logs / f"csale_app_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}.log"
        fh = LogFileHandler(log_file, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:  # an unwritable logs/ folder or a full disk: 73
            raise output_error(output_dir / "logs", exc, "cannot create the run log") from None
        raise
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if close_handlers_except is not None:
        close_handlers_except.setTarget(fh)
        close_handlers_except.flush()
        root.removeHandler(close_handlers_except)
        close_handlers_except.close()
    root.addHandler(fh)
    return log_file


def lock_output(settings: Settings, input_dir: Path, output_dir: Path) -> None:
    """Take the locks of the studysets this run writes (released by ``main`` at the end):
    a second run on the same OUTPUT_DIR and studysets exits 73 at once."""
    from ..io.readers import find_studysets, study_label
    from ..outputs import bids

    from ..io.terms import term_label

    labels = set(settings.studyset_labels) or (
        {study_label(f) for f in find_studysets(input_dir)}
        | {term_label(t) for t in settings.terms}
    )
    bids.OutputLock(output_dir, labels).acquire()


@contextlib.contextmanager
def frozen_heap():
    """Around the report's drawing in a CLI run: nilearn calls gc.collect() for every image
    it reads (dozens per figure); with a large heap (pandas, matplotlib, nilearn's own
    modules) that dominates the report's time. Importing the plotting stack first and
    freezing every object that exists then keeps those collections short; objects made
    while drawing are still collected. Only the CLI does this: it owns its process, a
    library call must not change its caller's garbage collector."""
    import gc

    import matplotlib.pyplot  # noqa: F401
    import nilearn.plotting  # noqa: F401

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _die(code: int, message: str) -> int:
    print(f"csale-app: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    interrupt.install()
    try:
        args, settings = parse_settings(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors -> BIDS 64; --help/--version -> 0
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    from .. import caches

    caches.setup()  # per-user numba/matplotlib caches, before numba or matplotlib is imported
    import warnings

    saved_showwarning = warnings.showwarning
    warnings.showwarning = _log_warning
    from ..report.forked import start_report_process

    # forked before the compute stack is imported: the report's imports run beside them
    report_process = start_report_process(settings.nprocs)
    from ..pipeline import Pipeline  # heavy imports after argument checks

    # NiMARE is not imported on the run path (templates and atlases are read as files); where
    # a feature imports it, its logging.basicConfig(INFO) is a no-op: the root has a handler.
    logging.getLogger().handlers.clear()
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.WARNING)

    pipe = Pipeline(settings, args.input_dir, args.output_dir)
    pipe.report_drawing = frozen_heap
    pipe.report_process = report_process
    pipe.command_line = "csale-app " + " ".join(argv if argv is not None else sys.argv[1:])
    log_file = None
    try:
        pipe.check_paths()
        setup_logging(settings, None)
        LOG.info("csale-app %s", " ".join(argv if argv is not None else sys.argv[1:]))
        for note in caches.notes():
            LOG.info("%s", note)

        def on_output_ready():
            nonlocal log_file
            lock_output(settings, Path(args.input_dir), Path(args.output_dir))
            log_file = setup_logging(settings, Path(args.output_dir))

        pipe.on_output_ready = on_output_ready
        pipe.run()
    except CsaleError as exc:
        LOG.debug("error", exc_info=True)
        return _die(exc.exit_code, exc.one_line())
    except KeyboardInterrupt:
        return _die(130, "interrupted; no partial file was left under a final name")
    except MemoryError:
        return _die(EXIT_FAILURE, "out of memory; lower --batch-size or --nprocs")
    except OSError as exc:
        LOG.debug("error", exc_info=True)
        if exc.errno in WRITE_ERRNOS:  # a write outside atomic.write_atomic: still 73
            where = display_path(exc.filename) if exc.filename else display_path(args.output_dir)
            return _die(EXIT_CANT_CREATE, f"{where}: {write_cause(exc)}")
        where = f" (details in {log_file})" if log_file else ""
        return _die(EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}{where}")
    except Exception as exc:  # noqa: BLE001 - last resort: one line, details in the log
        LOG.debug("unexpected error", exc_info=True)
        if interrupt.requested():
            return _die(130, "interrupted; no partial file was left under a final name")
        where = f" (details in {log_file})" if log_file else ""
        return _die(EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}{where}")
    finally:
        bids = sys.modules.get("csale_app.outputs.bids")
        if bids is not None:
            bids.release_all_locks()
        warnings.showwarning = saved_showwarning
        close_handlers(logging.getLogger("csale_app"))
    return EXIT_OK
