"""SIGTERM/SIGINT as a request to stop at the next safe point.

Raising from inside a signal handler can land in the middle of numba's cache loading or a
compiled call and surface as a SystemError; so the handler only records the request (and
restores the default action, so a second signal kills at once), and the pipeline calls
:func:`checkpoint` between permutation chunks and between stages.
"""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def _handler(signum, frame) -> None:
    _requested.set()
    signal.signal(signum, signal.SIG_DFL)


def install() -> None:
    _requested.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)


def requested() -> bool:
    return _requested.is_set()


def checkpoint() -> None:
    """Raise KeyboardInterrupt here if a stop was requested."""
    if _requested.is_set():
        raise KeyboardInterrupt
