"""C-SALE: ALE against a base-rate null (Magielse et al. 2025; SCALE, Langner et al. 2014).

The null keeps each experiment's number of foci and draws their positions from the
base-rate map of a reference database (sum of all its foci's kernels, restricted to the
analysis mask, normalised to 1: "probabilistic") or from the reference foci themselves
("deterministic", NiMARE SCALE). Voxel p = #(null >= observed) / n, clipped to
[1/n, 1 - 1/n]. Inference: cluster-extent (inside the ROI, p < voxel_thresh, more than
K voxels: :func:`extent_labels`) and cluster-level FWE from one streaming pass that keeps
each voxel's K smallest null values and their permutations (see kernels/cpu/csale.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import names
from ..errors import EmptySelectionError
from ..io.experiments import Experiments
from ..kernels.gaussian import experiment_fwhm
from ..kernels.cpu.ale import kernel_sum
from ..kernels.cpu.csale import cluster_null_sizes, merge_top
from ..kernels.engine import build_null_plan
from ..kernels.plan import Grid, build_kernel_table, pool_sampler, weighted_sampler
from .ale import kernels_for, observed_ale
from .inference import label_clusters
from .montecarlo import BackendChunk, NullRun, csale_pass1_call, run_chunked_reduce
from .pvalues import null_to_p, p_to_logp, p_to_z
from .tables import reported_clusters


def base_rate_map(
    db: Experiments, grid: Grid, kernel_fwhm: float | None, voxel_volume: float
) -> np.ndarray:
    """Sum of the kernels of every reference focus over the analysis mask, normalised to 1."""
    fwhm = experiment_fwhm(db.sample_size, kernel_fwhm)
    table, kid = build_kernel_table(fwhm, grid, voxel_volume)
    focus_kernel = np.repeat(kid, db.foci_counts()).astype(np.int32)
    total = kernel_sum(
        grid.padded_flat(db.ijk),
        focus_kernel,
        table.start,
        table.flat_offsets,
        table.values,
        grid.gridmap,
        grid.n_mask,
    )
    if total.sum() <= 0:
        raise EmptySelectionError(
            "the reference database has no foci within kernel reach of "
            "the analysis mask, so it gives no base rate there"
        )
    return total / total.sum()


def extent_labels(
    p: np.ndarray,
    grid: Grid,
    report_mask: np.ndarray | None,
    voxel_thresh: float,
    min_cluster_size: int,
) -> np.ndarray:
    """Cluster ids of the cluster-extent map, in the study's order (Magielse et al. 2025,
    ``cluster_extent_correction``): restrict to the ROI (``report_mask``) first, then keep
    voxels with p < ``voxel_thresh``, label them with faces connectivity and keep clusters
    of more than ``min_cluster_size`` voxels. Clusters are formed inside the ROI, so a
    cluster that reaches the size only through the dilation zone of the analysis mask is
    dropped (the cluster-FWE inference, by contrast, forms clusters in the analysis mask)."""
    supra = p < voxel_thresh
    if report_mask is not None:
        supra = supra & report_mask
    return label_clusters(np.where(supra, 1.0, 0.0), grid, 0.5, min_size=min_cluster_size).labels


def top_k_size(voxel_thresh: float, n_iters: int) -> int:
    return int(math.ceil(voxel_thresh * (n_iters - 1))) + 1


def observed_log(stat: np.ndarray) -> np.ndarray:
    """Observed ALE in the accumulator's log space (float32), for exceedance counting."""
    return np.log1p(-stat.astype(np.float64)).astype(np.float32)


def pass1_reducer(K: int):
    """Folds pass-one chunk results (exceedance counts, each voxel's K smallest null values
    with their permutations, per-permutation max) in permutation order."""

    def reduce(state, part):
        if state is None:
            return part
        top, top_id = merge_top([state["top"], part["top"]], [state["top_id"], part["top_id"]], K)
        return {
            "counts": state["counts"] + part["counts"],
            "top": top,
            "top_id": top_id,
            "max": np.concatenate([state["max"], part["max"]]),
        }

    return reduce


@dataclass
class CSALEResult:
    stat: np.ndarray
    p: np.ndarray
    base_rate: np.ndarray
    null_max: np.ndarray
    null_cluster_size: np.ndarray
    maps: dict[str, np.ndarray]
    clusters: pd.DataFrame
    significant_labels: np.ndarray
    extent_labels: np.ndarray
    observed: object


@dataclass(frozen=True)
class CSALEParams:
    """What a C-SALE computes: the null, its permutations and the inference thresholds."""

    n_iters: int
    voxel_thresh: float = 0.001
    cluster_alpha: float = 0.05
    min_cluster_size: int = 50
    kernel_fwhm: float | None = None
    seed: int = 0
    null_kind: str = "probabilistic"


def run_csale(
    exps: Experiments,
    db: Experiments,
    grid: Grid,
    affine: np.ndarray,
    report_mask: np.ndarray | None,
    params: CSALEParams,
    run: NullRun,
) -> CSALEResult:
    """C-SALE of ``exps`` against the base rate of ``db`` over ``grid`` (the analysis
    mask); what is thresholded or tabulated is restricted to ``report_mask``."""
    n_iters, voxel_thresh, cluster_alpha = params.n_iters, params.voxel_thresh, params.cluster_alpha
    min_cluster_size, kernel_fwhm = params.min_cluster_size, params.kernel_fwhm
    seed, null_kind, backend = params.seed, params.null_kind, run.backend
    voxel_volume = float(abs(np.linalg.det(affine[:3, :3])))
    table, kernel_ids = kernels_for(exps, grid, kernel_fwhm, voxel_volume)
    obs = observed_ale(exps, grid, table, kernel_ids)
    rate = base_rate_map(db, grid, kernel_fwhm, voxel_volume)
    if null_kind == "deterministic":
        inside = grid.mask[tuple(db.ijk.T)] if len(db.ijk) else np.zeros(0, bool)
        sampler = pool_sampler(grid, db.ijk[inside])
    else:
        sampler = weighted_sampler(grid, rate)
    plan = build_null_plan(grid, table, kernel_ids, exps.foci_counts(), sampler, seed)
    K = top_k_size(voxel_thresh, n_iters)
    obs_log = observed_log(obs.stat)

    pass1 = run_chunked_reduce(
        n_iters,
        run.chunk_size,
        BackendChunk(csale_pass1_call, backend, plan, (obs_log, K)),
        pass1_reducer(K),
        store=run.store,
        progress=run.progress,
        executor=run.executor,
        ledger=run.ledger,
    )
    null_sizes = cluster_null_sizes(
        pass1["top"],
        pass1["top_id"],
        voxel_thresh * (n_iters - 1),
        n_iters,
        grid.forward_neighbours,
        backend.n_threads,
    ).astype(np.float64)
    p = np.clip(pass1["counts"] / n_iters, 1.0 / n_iters, 1.0 - 1.0 / n_iters)

    supra_values = np.where(p < voxel_thresh, 1.0, 0.0)
    clusters = label_clusters(supra_values, grid, 0.5)
    p_cluster = (
        null_to_p(clusters.sizes.astype(np.float64), null_sizes)
        if len(clusters.sizes)
        else np.zeros(0)
    )
    sig = p_cluster < cluster_alpha
    z = p_to_z(p).astype(np.float32)
    p_vfwe = null_to_p(obs.stat, pass1["max"])
    p_cmap = np.r_[1.0, p_cluster][clusters.labels]
    table_df, significant = reported_clusters(
        clusters.labels,
        sig,
        obs.stat,
        grid,
        affine,
        report_mask,
        {"p_fwe_size": p_cluster},
        "peak_ale",
        clusters.sizes,
    )
    extent_lab = extent_labels(p, grid, report_mask, voxel_thresh, min_cluster_size)
    # Unthresholded maps cover the analysis mask (as ALE's); what is thresholded or
    # tabulated is restricted to the report mask (the ROI).
    maps = {
        names.ALE_STAT: obs.stat.astype(np.float32),
        names.Z: z,
        names.P: p.astype(np.float32),
        names.LOGP: p_to_logp(p),
        names.Z_VOXEL_FWE: p_to_z(p_vfwe).astype(np.float32),
        names.LOGP_VOXEL_FWE: p_to_logp(p_vfwe),
        names.Z_CLUSTER_SIZE_FWE: p_to_z(p_cmap).astype(np.float32),
        names.LOGP_CLUSTER_SIZE_FWE: p_to_logp(p_cmap),
        names.THRESHOLDED: np.where(significant > 0, z, 0).astype(np.float32),
        names.EXTENT_THRESHOLDED: np.where(extent_lab > 0, z, 0).astype(np.float32),
        names.BASERATE: rate.astype(np.float32),
    }
    return CSALEResult(
        obs.stat, p, rate, pass1["max"], null_sizes, maps, table_df, significant, extent_lab, obs
    )
