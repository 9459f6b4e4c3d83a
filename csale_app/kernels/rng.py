"""Counter-based random numbers: u = H(seed, permutation, focus).

A stateless hash (the SplitMix64 finaliser) instead of a stream generator, so every null
focus is a pure function of (seed, permutation index, focus index). This is what makes a
seed give the same null on the CPU and the GPU, for any thread count and batch size, and
lets a killed run resume from a finished chunk with identical results.

The function bodies are written once, in :func:`compile_rng`, and compiled with whatever
decorator the backend passes: ``numba.njit`` for the CPU engine, ``numba.cuda.jit(device=
True)`` for the CUDA kernels, and the identity for the numpy reference (they then work
elementwise on uint64 arrays).
"""

from __future__ import annotations

import numpy as np

M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
C_PERM = np.uint64(0xD1B54A32D192ED03)
S30 = np.uint64(30)
S27 = np.uint64(27)
S31 = np.uint64(31)
S11 = np.uint64(11)
INV53 = 1.0 / 9007199254740992.0  # 2**-53


def compile_rng(jit):
    """Return (mix64, uniform01, draw_index) compiled with ``jit``."""

    @jit
    def mix64(z):
        z = (z ^ (z >> S30)) * M1
        z = (z ^ (z >> S27)) * M2
        return z ^ (z >> S31)

    @jit
    def uniform01(key, perm, focus):
        h = mix64(key ^ (np.uint64(perm) * C_PERM))
        h = mix64(h + np.uint64(focus) * GOLDEN)
        return np.float64(h >> S11) * INV53

    @jit
    def draw_index(u, cdf, n_candidates):
        """Candidate for uniform ``u``: uniform if ``cdf`` is empty, else first cdf > u."""
        if cdf.shape[0] == 0:
            idx = np.int64(u * n_candidates)
            if idx >= n_candidates:
                idx = n_candidates - 1
            return idx
        lo = 0
        hi = cdf.shape[0] - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf[mid] > u:
                hi = mid
            else:
                lo = mid + 1
        return np.int64(lo)

    return mix64, uniform01, draw_index


def seed_key(seed: int) -> np.uint64:
    """Scramble a user seed into the key that every draw of the run starts from."""
    mix64 = _NUMPY[0]
    with np.errstate(over="ignore"):
        return np.uint64(mix64(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + GOLDEN))


def uniform_array(key: np.uint64, perm: int, focus: np.ndarray) -> np.ndarray:
    """Numpy reference: the uniforms of foci ``focus`` of permutation ``perm``."""
    focus = np.asarray(focus, dtype=np.uint64)
    with np.errstate(over="ignore"):
        _, uniform01, _ = _NUMPY
        return uniform01(np.uint64(key), perm, focus)


_NUMPY = compile_rng(lambda f: f)
