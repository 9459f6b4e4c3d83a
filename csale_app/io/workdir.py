"""Checkpoints of permutation chunks under the work dir (resume a killed run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..outputs.atomic import write_atomic


class ChunkDir:
    """One folder per (studyset, analysis, settings digest); one .npz per finished chunk."""

    def __init__(self, root: Path, name: str):
        self.path = Path(root) / name
        self.path.mkdir(parents=True, exist_ok=True)

    def _file(self, index: int) -> Path:
        return self.path / f"chunk-{index:06d}.npz"

    def get(self, index: int) -> dict[str, np.ndarray] | None:
        f = self._file(index)
        if not f.exists():
            return None
        try:
            with np.load(f) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            return None  # a damaged checkpoint is recomputed

    def put(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        def _save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        write_atomic(self._file(index), _save)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
