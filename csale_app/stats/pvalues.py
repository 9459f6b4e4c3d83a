"""p, z and -log10 p conversions with NiMARE 0.22's definitions (nimare.stats, transforms)."""

from __future__ import annotations

import numpy as np
from scipy import special


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round X.5 away from zero (nimare.utils._round2); numpy rounds half to even."""
    x = np.asarray(x, dtype=np.float64)
    y = np.round(np.abs(x))
    half = np.abs(np.abs(x) - np.round(np.abs(x))) == 0.5
    y[half] = np.ceil(np.abs(x[half]))
    return y * np.sign(x)


def nullhist_to_p(values: np.ndarray, weights: np.ndarray, bin_centers: np.ndarray) -> np.ndarray:
    """Upper-tail p of ``values`` against a histogram null (nimare.stats.nullhist_to_p)."""
    values = np.atleast_1d(np.asarray(values))
    n_bins = len(bin_centers)
    inv_step = 1 / (bin_centers[1] - bin_centers[0])
    null = weights / np.sum(weights)
    null = np.cumsum(null[::-1])[::-1]
    null /= np.max(null)
    smallest = np.min(null[null != 0])
    p = np.ones(values.shape)
    idx = np.where(values > 0)[0]
    bins = round_half_away(values[idx] * inv_step).astype(np.int64)
    bins[bins >= n_bins] = n_bins - 1
    p[idx] = null[bins]
    return np.maximum(smallest, np.minimum(p, 1.0))


def nullhist_to_threshold(weights: np.ndarray, bin_centers: np.ndarray, p: float) -> float:
    """Statistic whose upper-tail probability first falls to ``p`` (NiMARE's conservative pick)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.sum() <= 0:
        return float(bin_centers[0])
    tail = np.cumsum(w[::-1])[::-1]
    tail /= tail[0]
    below = np.flatnonzero(tail <= p)
    if below.size == 0:
        return float(bin_centers[-1])
    return float(bin_centers[max(0, below[0] - 1)])


def null_to_p(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Upper-tail p of ``values`` against a null sample, clipped to [1/n, 1 - 1/n].

    nimare.stats.null_to_p(tail="upper"): p = 1 - (# null < value) / n.
    """
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    null = np.sort(np.asarray(null, dtype=np.float64))
    idx = np.searchsorted(null, values, side="left").astype(float)
    p = 1 - idx / len(null)
    smallest = 1.0 / len(null)
    return np.maximum(smallest, np.minimum(p, 1.0 - smallest))


def p_to_z(p: np.ndarray) -> np.ndarray:
    """One-tailed z from p, evaluated in log space (nimare.transforms.p_to_z, tail='one')."""
    p = np.clip(np.asarray(p, dtype=np.float64), np.nextafter(0.0, 1.0), 1.0)
    return np.maximum(-special.ndtri_exp(np.log(p)), 0.0)


def p_to_logp(p: np.ndarray) -> np.ndarray:
    """-log10 p as float32, with p clipped to the positive float32 range (NiMARE)."""
    p = np.clip(
        np.asarray(p, dtype=np.float32), np.nextafter(np.float32(0), np.float32(1)), np.float32(1)
    )
    return (-np.log10(p)).astype(np.float32) + np.float32(0.0)


def nlogp_to_logp(nlogp: np.ndarray) -> np.ndarray:
    """-log10 p from natural-log p, float32, without forming p (NiMARE's uncorrected maps)."""
    logp = np.asarray(nlogp, dtype=np.float64) / -np.log(10.0) + 0.0
    return np.clip(logp, 0, np.finfo(np.float32).max).astype(np.float32)
