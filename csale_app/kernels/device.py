"""Building the compute backend from a :class:`BackendSpec` (``--device {auto,cpu,cuda}``,
``--gpu-id``, ``--nprocs``, ``--batch-size``, ``--mem``).

``auto`` takes the GPU when numba sees a usable CUDA device and falls back to the CPU
otherwise; ``cuda`` insists on the GPU and ends the run (exit 1, one line) when there is
none. numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) only counts as a device when
``CSALE_ALLOW_CUDASIM=1`` is also set, so that tests can force the simulated device while a
stray simulator setting never silently replaces a real run.
"""

from __future__ import annotations

import os

from ..errors import DeviceError
from .backend_spec import BackendSpec, simulator_enabled

DEVICES = ("auto", "cpu", "cuda")
ALLOW_SIM_ENV = "CSALE_ALLOW_CUDASIM"


def _one_line(text) -> str:
    return " ".join(str(text).split()).rstrip(":").strip()


def cuda_status() -> tuple[bool, str]:
    """(usable, text): whether a CUDA device can be used, and why not / which devices."""
    simulated = simulator_enabled()
    if simulated and os.environ.get(ALLOW_SIM_ENV, "") != "1":
        return False, (
            f"the numba CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1) and "
            f"{ALLOW_SIM_ENV}=1 is not set"
        )
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


def make_backend(spec: BackendSpec):
    """The backend ``spec`` asks for, built whole: a ``CUDABackend`` or a ``CPUBackend``.

    ``cuda`` without a usable GPU raises :class:`DeviceError`; ``auto`` then falls back to the
    CPU (whose ``fallback_reason`` says why, for the log and the report). The chosen
    backend's ``describe()`` says which one runs. ``--device cpu`` never imports numba.cuda.
    """
    from .engine import CPUBackend

    dev = spec.device
    if dev not in DEVICES:
        raise DeviceError(f"--device {dev}: expected one of {', '.join(DEVICES)}")
    if dev == "cpu":
        return CPUBackend(spec.n_threads)
    ok, text = cuda_status()
    if ok:
        try:
            from .cuda.backend import CUDABackend

            return CUDABackend(spec)
        except Exception as exc:
            ok, text = False, _one_line(exc) or type(exc).__name__
    if dev == "cuda":
        raise DeviceError(f"--device cuda: no usable NVIDIA GPU ({text}); use --device cpu or auto")
    return CPUBackend(spec.n_threads, fallback_reason=f"no usable NVIDIA GPU ({text})")
