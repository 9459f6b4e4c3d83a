"""Content digests of input files and arrays (what the reuse rule compares)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .read_common import check_regular_file


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of every file (relative name and bytes) in a folder."""
    path = Path(path)
    if not path.is_dir():
        check_regular_file(path)  # never read a device or FIFO (/dev/zero would not end)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()
