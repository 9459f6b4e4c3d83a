"""Each report figure drawn once: rendered figures stored under the digest of what they show.

A figure's key is the SHA-256 of the drawing function's name, every argument that reaches
the pixels (images by their data, dtype, shape and affine; tables by their values and
columns; plain values by ``repr``) and a salt made of the versions of csale_app, nilearn,
matplotlib and SUITPy, the source of the drawing modules and the background template's
bytes. Titles, captions and HTML attributes stay out of the key: they are page text, not
pixels. So

- within one report, the same picture (the ROI shown for every studyset, a MACM seed that
  is also the ROI) is drawn once;
- with a folder (``OUTPUT_DIR/.csale_work/report-figures``), a later run that reuses a
  studyset embeds the figures drawn for it before instead of drawing them again. A changed
  map, table, option or version gives another key, so a stored figure can never stand for
  other data.

The folder keeps only what the last report used (:meth:`FigureCache.prune`). A file that
cannot be read or written is ignored: the figure is drawn as if nothing were stored.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CsaleError
from ..io.digest import array_digest, file_digest
from ..outputs.atomic import write_text

LOG = logging.getLogger(__name__)
PAGE_TEXT = ("title", "caption", "attrs")  # arguments that are not drawn
SUFFIX = ".json"


@functools.lru_cache(maxsize=1)
def salt() -> bytes:
    import matplotlib
    import nilearn

    from .._version import __version__

    h = hashlib.sha256(f"{__version__}|{nilearn.__version__}|{matplotlib.__version__}".encode())
    here = Path(__file__).parent
    for name in ("figures.py", "viewer.py", "flatmap.py"):  # a change to how they are drawn
        h.update((here / name).read_bytes())
    from .flatmap import suitpy_version  # the flatmap surfaces and borders come from SUITPy

    h.update(suitpy_version().encode())
    try:  # the background every map is drawn on (NiMARE's T1 template file)
        from ..io.templates import template_files

        h.update(file_digest(template_files()["t1w"]).encode())
    except (OSError, KeyError, FileNotFoundError):
        h.update(b"nilearn's own template")  # what figures.background_image falls back to
    return h.digest()


def _feed(h, value) -> None:
    """Put ``value`` into the hash ``h`` by content (recursively for containers)."""
    import nibabel as nib
    import pandas as pd

    if isinstance(value, nib.spatialimages.SpatialImage):
        affine = np.asarray(value.affine, dtype=np.float64)
        h.update(b"img" + array_digest(np.asanyarray(value.dataobj), affine).encode())
    elif isinstance(value, np.ndarray):
        h.update(b"arr" + array_digest(value).encode())
    elif isinstance(value, pd.DataFrame):
        h.update(b"df" + repr([(str(c), str(t)) for c, t in value.dtypes.items()]).encode())
        h.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
    elif isinstance(value, dict):
        h.update(b"dict%d" % len(value))
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(b"seq%d" % len(value))
        for v in value:
            _feed(h, v)
    elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
        h.update(repr(value).encode() + b"\0")
    else:  # something without a content digest: never share its figure
        raise TypeError(f"no content key for {type(value).__name__}")


def figure_key(name: str, arguments: dict) -> str | None:
    h = hashlib.sha256(salt() + name.encode())
    try:
        for k in sorted(arguments):
            if k not in PAGE_TEXT:
                h.update(k.encode())
                _feed(h, arguments[k])
    except Exception:  # noqa: BLE001  no key (or unreadable data): draw, never share
        return None
    return h.hexdigest()


class FigureCache:
    """Rendered payloads (dicts of strings and ints) by key, in memory and in ``directory``."""

    def __init__(self, directory: Path | None = None, processes: int = 1):
        self.directory = Path(directory) if directory is not None else None
        self.memory: dict[str, dict] = {}
        self.used: set[str] = set()
        self.hits = self.drawn = 0
        # processes > 1: figures not stored are queued (the caller gets a placeholder) and
        # drawn by :meth:`draw_pending` in that many processes at once
        self.processes = max(1, int(processes))
        self.pending: dict[str, _Pending] = {}

    def get(self, key: str) -> dict | None:
        payload = self.memory.get(key)
        if payload is None and self.directory is not None:
            try:
                payload = json.loads((self.directory / (key + SUFFIX)).read_text())
            except (OSError, ValueError):
                payload = None
            if payload is not None and not isinstance(payload, dict):
                payload = None
        return payload

    def reused(self, key: str, payload: dict) -> None:
        """``payload`` (from :meth:`get`) was sound and is shown: count and keep it."""
        self.memory[key] = payload
        self.used.add(key)
        self.hits += 1

    def put(self, key: str, payload: dict) -> None:
        self.memory[key] = payload
        self.used.add(key)
        self.drawn += 1
        if self.directory is None:
            return
        try:
            write_text(self.directory / (key + SUFFIX), json.dumps(payload))
        except (OSError, CsaleError) as exc:  # not kept: drawn again next time
            LOG.debug("report: figure not stored in %s: %s", self.directory, exc)

    def draw_pending(self) -> int:
        """Draw the queued figures (in parallel, see :func:`.forked.run_parallel`), fill in their
        placeholders and store them; returns how many were drawn."""
        pending, self.pending = list(self.pending.items()), {}
        from .forked import run_parallel

        results = run_parallel([p.draw for _, p in pending], self.processes)
        for (key, p), result in zip(pending, results):
            for placeholder in p.placeholders:
                p.fill(placeholder, result)
            payload = p.to_payload(result)
            if payload is not None:
                self.put(key, payload)
        return len(pending)

    def prune(self) -> int:
        """Delete stored figures the last report did not use; returns how many."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        n = 0
        for p in self.directory.iterdir():  # (a left-over temporary file is never used)
            if p.suffix == SUFFIX and p.stem not in self.used:
                with contextlib.suppress(OSError):
                    p.unlink()
                    n += 1
        return n


_ACTIVE: contextvars.ContextVar[FigureCache | None] = contextvars.ContextVar(
    "csale_app_figure_cache", default=None
)


@contextlib.contextmanager
def active(cache: FigureCache):
    """Use ``cache`` for the figures drawn inside the block (one report)."""
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


@dataclass
class _Pending:
    """A figure queued for drawing and the placeholders handed out for it."""

    draw: Callable[[], object]
    to_payload: Callable
    fill: Callable  # fill(placeholder, drawn result)
    placeholders: list = field(default_factory=list)


def draw_pending() -> int:
    """Draw what the active cache queued (see :meth:`FigureCache.draw_pending`)."""
    cache = _ACTIVE.get()
    return cache.draw_pending() if cache is not None else 0


def cached(to_payload, from_payload, pending=None, fill=None):
    """Decorator for a drawing function: look its result up by content before drawing.

    ``to_payload(result)`` gives what is stored (None: a failed drawing, not stored);
    ``from_payload(payload, page_text)`` rebuilds the result with this call's title,
    caption and attributes. Outside :func:`active`, the function simply draws.

    With ``pending(page_text)`` (an empty result carrying this call's page text) and
    ``fill(placeholder, result)`` (copies the drawn parts into it), a cache with
    ``processes > 1`` queues the drawing and returns the placeholder at once; the figures
    are then drawn together by :meth:`FigureCache.draw_pending` before the page is
    rendered (the same figure asked for twice is drawn once).
    """

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            cache = _ACTIVE.get()
            if cache is None:
                return fn(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = figure_key(fn.__name__, bound.arguments)
            if key is None:
                return fn(*args, **kwargs)
            page_text = {k: bound.arguments.get(k) for k in PAGE_TEXT}
            payload = cache.get(key)
            if payload is not None:
                try:
                    result = from_payload(payload, page_text)
                except (KeyError, TypeError, ValueError):  # a damaged file: draw again
                    pass
                else:
                    cache.reused(key, payload)
                    return result
            if pending is not None and cache.processes > 1:
                queued = cache.pending.get(key)
                if queued is None:
                    queued = cache.pending[key] = _Pending(
                        functools.partial(fn, *args, **kwargs), to_payload, fill
                    )
                placeholder = pending(page_text)
                queued.placeholders.append(placeholder)
                return placeholder
            result = fn(*args, **kwargs)
            payload = to_payload(result)
            if payload is not None:
                cache.put(key, payload)
            return result

        return call

    return wrap
