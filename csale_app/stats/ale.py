"""The ALE statistic and its approximate (histogram) null, as NiMARE 0.22 defines them.

MA map of an experiment = voxel-wise max of its foci's kernels (float32, NiMARE's dtype);
ALE = 1 - prod(1 - MA), evaluated as 1 - exp(sum log1p(-MA)). The approximate null
(Eickhoff et al. 2012) convolves the per-experiment MA histograms on a 1e-5 grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..io.experiments import Experiments
from ..kernels.gaussian import experiment_fwhm
from ..kernels.cpu.ale import ma_csr
from ..kernels.plan import Grid, KernelTable, build_kernel_table
from .pvalues import nlogp_to_logp, nullhist_to_p, p_to_z

INV_STEP = 100000


@dataclass
class MAMaps:
    """Experiment-by-mask-voxel MA values in CSR form."""

    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray  # float32
    n_mask: int

    @property
    def n_experiments(self) -> int:
        return len(self.indptr) - 1

    def row(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.indptr[e], self.indptr[e + 1]
        return self.cols[a:b], self.vals[a:b]


def kernels_for(
    exps: Experiments, grid: Grid, kernel_fwhm: float | None, voxel_volume: float
) -> tuple[KernelTable, np.ndarray]:
    return build_kernel_table(experiment_fwhm(exps.sample_size, kernel_fwhm), grid, voxel_volume)


def observed_ma(
    exps: Experiments, grid: Grid, table: KernelTable, kernel_ids: np.ndarray
) -> MAMaps:
    foci_flat = grid.padded_flat(exps.ijk)
    indptr, cols, vals = ma_csr(
        foci_flat,
        exps.focus_start,
        kernel_ids,
        table.start,
        table.flat_offsets,
        table.values,
        grid.gridmap,
        grid.n_mask,
    )
    return MAMaps(indptr, cols, vals, grid.n_mask)


@njit(cache=True)
def _accumulate(out, cols, weights):
    for i in range(cols.shape[0]):
        out[cols[i]] += weights[i]


#: MA entries per step of :func:`log_sums` (bounded temporaries: a whole-brain MACM over a
#: Neurosynth-size selection has ~10^8 entries).
LOG_SUM_CHUNK = 1 << 20


def log_sums(
    cols: np.ndarray, vals: np.ndarray, n_mask: int, float64_log: bool = False
) -> np.ndarray:
    """Per mask voxel, the sum of log(1 - MA): what ``np.bincount(cols,
    weights=np.log1p(-vals), minlength=n_mask)`` gives, bit for bit (same float32 or
    float64 log, same float64 additions in the same order), in bounded memory."""
    out = np.zeros(n_mask, dtype=np.float64)
    for a in range(0, len(cols), LOG_SUM_CHUNK):
        v = vals[a : a + LOG_SUM_CHUNK]
        w = np.log1p(-v.astype(np.float64)) if float64_log else np.log1p(-v)
        _accumulate(out, cols[a : a + LOG_SUM_CHUNK], w.astype(np.float64))
    return out


def ale_statistic(ma: MAMaps, rows: np.ndarray | None = None) -> np.ndarray:
    """ALE over mask voxels (float32), optionally from a subset of experiments."""
    if rows is None:
        cols, vals = ma.cols, ma.vals
    else:
        parts = [ma.row(e) for e in rows]
        cols = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
        vals = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    return (1.0 - np.exp(log_sums(cols, vals, ma.n_mask))).astype(np.float32)


@njit(cache=True)
def _nearest_bin(value, inv_step, n_bins):
    scaled = value * inv_step
    fl = np.floor(scaled)
    idx = int(fl) + int(scaled - fl >= 0.5)
    if idx < 0:
        return 0
    if idx >= n_bins:
        return n_bins - 1
    return idx


@njit(cache=True)
def _experiment_histogram(vals, n_zero, recip, inv_step, n_bins):
    hist = np.zeros(n_bins, dtype=np.float64)
    for i in range(vals.shape[0]):
        hist[_nearest_bin(vals[i], inv_step, n_bins)] += 1.0
    hist[0] += n_zero
    hist *= recip
    return hist


@njit(cache=True)
def _convolve_histograms(ale_hist, exp_hist, centers, inv_step, out):
    n_bins = centers.shape[0]
    out[:] = 0.0
    for i in range(n_bins):
        pe = exp_hist[i]
        if pe <= 0:
            continue
        one_minus = 1.0 - centers[i]
        for j in range(n_bins):
            pa = ale_hist[j]
            if pa <= 0:
                continue
            score = 1.0 - one_minus * (1.0 - centers[j])
            out[_nearest_bin(score, inv_step, n_bins)] += pe * pa
    return out


def histogram_bins(ma: MAMaps) -> np.ndarray:
    """Bin centres from 0 to the largest attainable ALE (nimare ALE._determine_histogram_bins)."""
    step = 1 / INV_STEP
    max_ma = np.zeros(ma.n_experiments, dtype=np.float32)
    for e in range(ma.n_experiments):
        _, v = ma.row(e)
        if v.size:
            max_ma[e] = v.max()
    max_ma = np.ceil(max_ma * INV_STEP) / INV_STEP
    max_poss = 1.0 - np.prod(1.0 - max_ma)
    return np.round(np.arange(0, max_poss + 1.5 * step, step), 5)


def approximate_null(ma: MAMaps, centers: np.ndarray) -> np.ndarray:
    """Histogram weights of the ALE null under random spatial association (Eickhoff 2012)."""
    centers = centers.astype(np.float64)
    inv_step = 1 / (centers[1] - centers[0])
    n_bins = len(centers)
    recip = 1.0 / ma.n_mask
    ale_hist = None
    tmp = np.zeros(n_bins)
    for e in range(ma.n_experiments):
        _, v = ma.row(e)
        exp_hist = _experiment_histogram(v, ma.n_mask - v.shape[0], recip, inv_step, n_bins)
        if ale_hist is None:
            ale_hist = exp_hist
            continue
        _convolve_histograms(ale_hist, exp_hist, centers, inv_step, tmp)
        ale_hist, tmp = tmp, ale_hist
    return ale_hist


@dataclass
class ObservedALE:
    stat: np.ndarray  # float32 (n_mask,)
    p: np.ndarray
    z: np.ndarray
    logp: np.ndarray
    bins: np.ndarray
    null_weights: np.ndarray
    ma: MAMaps

    def threshold_for_p(self, p: float) -> float:
        from .pvalues import nullhist_to_threshold

        return nullhist_to_threshold(self.null_weights, self.bins, p)


def observed_ale(
    exps: Experiments, grid: Grid, table: KernelTable, kernel_ids: np.ndarray
) -> ObservedALE:
    """ALE, p, z and -log10 p over the mask, p from the approximate null."""
    ma = observed_ma(exps, grid, table, kernel_ids)
    stat = ale_statistic(ma)
    bins = histogram_bins(ma)
    weights = approximate_null(ma, bins)
    p = nullhist_to_p(stat, weights, bins)
    return ObservedALE(stat, p, p_to_z(p), nlogp_to_logp(np.log(p)), bins, weights, ma)
