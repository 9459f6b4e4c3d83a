"""ALE with Monte Carlo FWE (Eickhoff et al. 2012, 2016), as NiMARE 0.22's ALE + FWECorrector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import names
from ..io.experiments import Experiments
from ..kernels.engine import build_null_plan
from ..kernels.plan import Grid, uniform_sampler
from .ale import ObservedALE, kernels_for, observed_ale
from .inference import FWEMaps, montecarlo_fwe_maps
from .montecarlo import BackendChunk, NullRun, fwe_call, run_chunked
from .tables import reported_clusters


@dataclass(frozen=True)
class ALENull:
    """Per permutation of the Monte Carlo null: the largest ALE, cluster size and mass."""

    max_stat: np.ndarray
    max_cluster_size: np.ndarray
    max_cluster_mass: np.ndarray


@dataclass
class ALEResult:
    observed: ObservedALE
    fwe: FWEMaps
    ss_thresh: float
    null: ALENull
    maps: dict[str, np.ndarray]  # names.ALE_MAPS -> values over mask voxels
    clusters: pd.DataFrame
    significant_labels: np.ndarray  # per mask voxel: cluster id (renumbered) or 0


@dataclass(frozen=True)
class ALEParams:
    """What an ALE computes (NiMARE's ALE + FWECorrector(method="montecarlo") settings)."""

    n_iters: int
    voxel_thresh: float = 0.001
    cluster_alpha: float = 0.05
    kernel_fwhm: float | None = None
    seed: int = 0


def run_ale(
    exps: Experiments,
    grid: Grid,
    affine: np.ndarray,
    params: ALEParams,
    run: NullRun,
    report_mask: np.ndarray | None = None,
) -> ALEResult:
    """ALE, its approximate-null p and Monte Carlo FWE over ``grid`` (the analysis mask).

    ``report_mask`` (per mask voxel, the ROI) restricts what is reported: the thresholded
    map, the cluster table and the cluster ids (see :func:`.tables.reported_clusters`);
    the unthresholded maps cover the whole analysis mask."""
    n_iters, voxel_thresh, cluster_alpha = params.n_iters, params.voxel_thresh, params.cluster_alpha
    kernel_fwhm, seed = params.kernel_fwhm, params.seed
    voxel_volume = float(abs(np.linalg.det(affine[:3, :3])))
    table, kernel_ids = kernels_for(exps, grid, kernel_fwhm, voxel_volume)
    obs = observed_ale(exps, grid, table, kernel_ids)
    ss_thresh = obs.threshold_for_p(voxel_thresh)
    plan = build_null_plan(grid, table, kernel_ids, exps.foci_counts(), uniform_sampler(grid), seed)
    null = run_chunked(
        n_iters,
        run.chunk_size,
        BackendChunk(fwe_call, run.backend, plan, (ss_thresh,)),
        store=run.store,
        progress=run.progress,
        executor=run.executor,
        ledger=run.ledger,
    )
    fwe = montecarlo_fwe_maps(obs.stat, grid, ss_thresh, null["max"], null["size"], null["mass"])
    sig = fwe.cluster_p_size < cluster_alpha
    clusters, significant = reported_clusters(
        fwe.clusters.labels,
        sig,
        obs.stat,
        grid,
        affine,
        report_mask,
        {"p_fwe_size": fwe.cluster_p_size, "p_fwe_mass": fwe.cluster_p_mass},
        "peak_ale",
        fwe.clusters.sizes,
    )
    z_thr = np.where(significant > 0, obs.z, 0.0)
    maps = {
        names.ALE_STAT: obs.stat,
        names.Z: obs.z.astype(np.float32),
        names.P: obs.p.astype(np.float32),
        names.LOGP: obs.logp,
        names.Z_VOXEL_FWE: fwe.maps["z_level-voxel"],
        names.LOGP_VOXEL_FWE: fwe.maps["logp_level-voxel"],
        names.Z_CLUSTER_SIZE_FWE: fwe.maps["z_desc-size_level-cluster"],
        names.LOGP_CLUSTER_SIZE_FWE: fwe.maps["logp_desc-size_level-cluster"],
        names.Z_CLUSTER_MASS_FWE: fwe.maps["z_desc-mass_level-cluster"],
        names.LOGP_CLUSTER_MASS_FWE: fwe.maps["logp_desc-mass_level-cluster"],
        names.THRESHOLDED: z_thr.astype(np.float32),
    }
    return ALEResult(
        obs,
        fwe,
        ss_thresh,
        ALENull(null["max"], null["size"], null["mass"]),
        maps,
        clusters,
        significant,
    )
