"""Where the Dask scheduler is (``--dask-scheduler`` / ``--dask-scheduler-file``) and where
dask's own log records go. Imports no dask: the address is known, or refused, before
anything starts.

On HPC the scheduler's address is not known when the batch script is written:
``dask scheduler --scheduler-file PATH`` (and dask-jobqueue's scheduler with
``scheduler_options={"scheduler_file": PATH}``) writes it to a JSON file, whose
``"address"`` entry is read here. The file may appear a little after the job starts (the
scheduler is started in the background), so it is waited for up to ``--dask-timeout``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .errors import InputError, MissingInputError, display_path
from .settings import OptionValueError, dask_address

LOG = logging.getLogger(__name__)
_POLL_S = 0.2


def scheduler_address(settings) -> str | None:
    """The scheduler address of a run: ``--dask-scheduler``, or the ``address`` of the
    ``--dask-scheduler-file`` (missing after ``--dask-timeout`` seconds or unreadable: exit
    66; not a scheduler file: exit 65, naming the file); None without a cluster."""
    if settings.dask_scheduler:
        return settings.dask_scheduler
    if not settings.dask_scheduler_file:
        return None
    return read_scheduler_file(Path(settings.dask_scheduler_file), settings.dask_timeout)


def read_scheduler_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    name = display_path(path)
    if not path.exists():
        raise MissingInputError(
            f"{name}: --dask-scheduler-file does not exist (waited "
            f"{timeout:g} s, --dask-timeout, for the scheduler to write "
            "it)"
        )
    text = ""
    for _ in range(int(timeout / _POLL_S) + 1):  # the scheduler may be writing it right now
        try:
            text = path.read_text(encoding="utf-8")
        except IsADirectoryError:
            raise MissingInputError(
                f"{name}: --dask-scheduler-file is a folder, not the scheduler's JSON file"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MissingInputError(
                f"{name}: cannot read the --dask-scheduler-file ({cause})"
            ) from None
        if text.strip() or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise InputError(
            path,
            getattr(exc, "lineno", None),
            f'not a Dask scheduler file (JSON with an "address"): '
            f"{exc.msg if hasattr(exc, 'msg') else exc}",
        ) from None
    address = info.get("address") if isinstance(info, dict) else None
    if not isinstance(address, str) or not address:
        raise InputError(
            path,
            None,
            'not a Dask scheduler file: no "address" entry (written '
            "by dask scheduler --scheduler-file PATH)",
        )
    try:
        return dask_address(address)
    except OptionValueError as exc:
        raise InputError(path, None, f'"address": {exc}') from None


class _ToRunLog(logging.Handler):
    """dask's records, re-emitted into the run log (DEBUG: the console shows them with -vv
    only), so that a lost scheduler or a dying worker is one csale-app line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG.debug("%s: %s", record.name, record.getMessage())
        except Exception:  # pragma: no cover - never let logging break a run
            pass


_ROUTED = False


def route_dask_logging() -> None:
    """Send the records of dask, distributed and tornado to the run log instead of stderr
    (once per process, after distributed is imported: its logging config installs stderr
    handlers on several of these loggers then)."""
    global _ROUTED
    if _ROUTED:
        return
    tops = ("distributed", "dask", "tornado", "bokeh")
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in tops]
    for name in sorted(set(names) | set(tops)):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = name not in tops  # children reach their top logger
        if name in tops:
            logger.addHandler(_ToRunLog())
    _ROUTED = True
