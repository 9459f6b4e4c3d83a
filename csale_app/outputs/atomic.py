"""Atomic writes: every file is written to a temporary name in its folder, then renamed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import WRITE_ERRNOS, CsaleError, output_error, write_errors


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700; give outputs the usual umask-based mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path`` (same filesystem, atomic).

    A write that fails for lack of space, a file size limit, permissions or a read-only
    file system raises :class:`~csale_app.errors.OutputError` (exit 73) naming ``path``;
    the temporary file is removed, so nothing partial is left under any name.
    """
    path = Path(path)
    with write_errors(path.parent, "cannot create the folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)[-16:]  # keeps .nii.gz / .tsv so writers pick the format
    # Hidden, with a bounded length: a BIDS name near the 255-byte limit must not make the
    # temporary name (name + random part + suffix) too long for the filesystem.
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name[:96]}.", suffix=f".part{suffix}", dir=path.parent
        )
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise output_error(path, exc) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        public_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as exc:
        try:
            tmp_path.unlink(missing_ok=True)
        except OSError:
            pass
        if (
            isinstance(exc, OSError)
            and not isinstance(exc, CsaleError)
            and exc.errno in WRITE_ERRNOS
        ):
            raise output_error(path, exc) from None
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_bytes(path: Path, data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))
