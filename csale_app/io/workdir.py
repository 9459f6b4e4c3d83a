"""Checkpoints of permutation chunks under the work dir (resume a killed run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import write_errors
from ..outputs.atomic import write_atomic

DEFAULT_WORK = ".csale_work"  # OUTPUT_DIR/.csale_work unless -w/--work-dir


def report_figure_dir(output_dir: Path) -> Path:
    """Where the report keeps its drawn figures by content (report/figure_cache.py): under
    OUTPUT_DIR whatever -w says, so runs into one OUTPUT_DIR with different work folders
    (a job array, then the group run) share them and a reused studyset is not drawn again."""
    return Path(output_dir) / DEFAULT_WORK / "report-figures"


class ChunkDir:
    """One folder per (studyset, analysis, settings digest); one .npz per finished chunk.

    With ``root`` None (a Python API fit without ``work_dir``) nothing is kept: every
    chunk is computed, nothing is written."""

    def __init__(self, root: Path | None, name: str):
        self.path = None if root is None else Path(root) / name
        if self.path is not None:
            with write_errors(self.path, "cannot create the work folder"):
                self.path.mkdir(parents=True, exist_ok=True)

    def _file(self, index: int) -> Path:
        return self.path / f"chunk-{index:06d}.npz"

    def get(self, index: int) -> dict[str, np.ndarray] | None:
        if self.path is None:
            return None
        f = self._file(index)
        if not f.exists():
            return None
        try:
            with np.load(f) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            return None  # a damaged checkpoint is recomputed

    def put(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        if self.path is None:
            return

        def _save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        write_atomic(self._file(index), _save)

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def remove_checkpoints(root: Path | None, label: str, digest: str) -> None:
    """Remove a studyset's checkpoint folders (``<label>[-<macm>]-<analysis>-<digest>-c<n>``)
    once its results are published; the work root itself goes when it is empty."""
    if root is None:
        return
    root = Path(root)
    if not root.is_dir():
        return
    for d in root.iterdir():
        if d.is_dir() and (d.name.startswith(f"{label}-") and f"-{digest}-c" in d.name):
            shutil.rmtree(d, ignore_errors=True)
