"""What a compute backend is built from: one frozen record, given whole at construction.

The pipeline, the Python API (through the pipeline) and each Dask worker build their backend
with :func:`csale_app.kernels.device.make_backend` from a :class:`BackendSpec`; nothing sets
a backend's device, threads, batch size or memory cap afterwards. A leaf module (numpy-free,
no numba.cuda), so that ``--device cpu`` never imports the CUDA side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend. Values are already validated (the options' parsers in
    :mod:`csale_app.settings` are the one check); this record only carries them."""

    device: str = "auto"  # auto | cpu | cuda
    gpu_id: int = 0  # CUDA device index
    n_threads: int | None = 1  # CPU threads (None: all numba threads)
    batch_size: int | None = None  # permutations per GPU launch (None: from free memory)
    mem_gb: float | None = None  # cap on the device memory a GPU batch may use (--mem)

    @classmethod
    def from_settings(cls, settings) -> BackendSpec:
        """The spec of a run's settings (``device``, ``gpu_id``, ``nprocs``, ``batch_size``
        - ``"auto"`` or a positive integer as text - and ``mem_gb``)."""
        batch = getattr(settings, "batch_size", "auto")
        return cls(
            device=str(getattr(settings, "device", None) or "auto").strip().lower(),
            gpu_id=int(getattr(settings, "gpu_id", None) or 0),
            n_threads=getattr(settings, "nprocs", None),
            batch_size=None if batch in (None, "auto") else int(batch),
            mem_gb=getattr(settings, "mem_gb", None) or None,
        )

    @property
    def mem_limit_bytes(self) -> float | None:
        return None if self.mem_gb is None else self.mem_gb * 2**30


def simulator_enabled() -> bool:
    """True when numba's CUDA simulator replaces the real device (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        import numba

        return bool(getattr(numba.config, "ENABLE_CUDASIM", 0))
    except Exception:  # pragma: no cover - numba is a hard dependency
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
