"""Choosing the compute backend: ``--device {auto,cpu,cuda}``, ``--gpu-id``, ``--batch-size``.

``auto`` takes the GPU when numba sees a usable CUDA device and falls back to the CPU
otherwise; ``cuda`` insists on the GPU and ends the run (exit 1, one line) when there is
none. numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) only counts as a device when
``CSALE_ALLOW_CUDASIM=1`` is also set, so that tests can force the simulated device while a
stray simulator setting never silently replaces a real run.
"""

from __future__ import annotations

import os

from ..errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")
ALLOW_SIM_ENV = "CSALE_ALLOW_CUDASIM"


def _one_line(text) -> str:
    return " ".join(str(text).split()).rstrip(":").strip()


def _simulator_enabled() -> bool:
    try:
        import numba

        return bool(getattr(numba.config, "ENABLE_CUDASIM", 0))
    except Exception:  # pragma: no cover - numba is a hard dependency
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda_status() -> tuple[bool, str]:
    """(usable, text): whether a CUDA device can be used, and why not / which devices."""
    simulated = _simulator_enabled()
    if simulated and os.environ.get(ALLOW_SIM_ENV, "") != "1":
        return False, (f"the numba CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1) and "
                       f"{ALLOW_SIM_ENV}=1 is not set")
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - depends on the installation
        return False, f"numba.cuda cannot be imported: {_one_line(exc)}"
    try:
        available = bool(cuda.is_available())
    except Exception as exc:  # pragma: no cover - driver-dependent
        return False, _one_line(exc) or type(exc).__name__
    if not available:
        reason = ""
        try:
            reason = _one_line(cuda.cuda_error() or "")
        except Exception:  # pragma: no cover
            pass
        return False, reason or "no CUDA driver or CUDA-capable device found"
    try:
        names = []
        for i, gpu in enumerate(cuda.gpus):
            name = getattr(gpu, "name", None)
            if name is None:
                name = "numba CUDA simulator" if simulated else "CUDA device"
            names.append(f"{i}: {name.decode() if isinstance(name, bytes) else name}")
    except Exception as exc:  # pragma: no cover - driver-dependent
        return False, _one_line(exc) or type(exc).__name__
    if not names:
        return False, "no CUDA-capable device found"
    return True, ", ".join(names)


def describe_device() -> str:
    """One line for the log: the CUDA devices seen, or why there is none."""
    ok, text = cuda_status()
    if ok:
        return f"CUDA devices: {text}"
    return f"no usable NVIDIA GPU ({text})"


def _cuda_backend(gpu_id, batch_size, n_threads=1):
    from .cuda.backend import CUDABackend

    return CUDABackend(0 if gpu_id is None else int(gpu_id), batch_size, n_threads=n_threads)


def select_backend(device: str = "auto", gpu_id: int | None = None, n_threads: int | None = 1,
                   batch_size="auto"):
    """The backend for ``--device``: a ``CUDABackend`` or a ``CPUBackend``.

    ``cuda`` without a usable GPU raises :class:`DeviceError`; ``auto`` then falls back to the
    CPU (and sets ``fallback_reason`` on the returned backend). The chosen backend's
    ``describe()`` says which one runs. An invalid ``batch_size``
    raises ``ValueError``.
    """
    from .engine import CPUBackend

    dev = str(device or "auto").strip().lower()
    if dev not in DEVICES:
        raise DeviceError(f"--device {device}: expected one of {', '.join(DEVICES)}")
    from .cuda.backend import parse_batch_size

    parse_batch_size(batch_size)  # validate early, whatever the device
    if dev == "cpu":
        return CPUBackend(n_threads)
    ok, text = cuda_status()
    if ok:
        try:
            return _cuda_backend(gpu_id, batch_size, n_threads)
        except Exception as exc:
            ok, text = False, _one_line(exc) or type(exc).__name__
    if dev == "cuda":
        raise DeviceError(f"--device cuda: no usable NVIDIA GPU ({text}); "
                          f"use --device cpu or auto")
    backend = CPUBackend(n_threads)
    backend.fallback_reason = f"no usable NVIDIA GPU ({text})"  # for the log / report
    return backend
