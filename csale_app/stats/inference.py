"""Cluster labelling of observed maps and FWE p maps from permutation nulls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..kernels.plan import Grid
from .pvalues import null_to_p, p_to_logp, p_to_z

FACES = ndimage.generate_binary_structure(3, 1)


@dataclass
class Clusters:
    """Clusters of an observed map: per-mask-voxel label (0 = none) and per-cluster stats."""

    labels: np.ndarray  # int32 (n_mask,)
    sizes: np.ndarray  # int64 (n_clusters,), cluster k has label k + 1
    masses: np.ndarray  # float64 (n_clusters,)


def label_clusters(values: np.ndarray, grid: Grid, thresh: float, min_size: int = 0) -> Clusters:
    """Faces-connected clusters of mask voxels with value > ``thresh`` (and size > min_size).

    Mass = sum of (value - thresh), NiMARE's cluster mass.
    """
    vol = np.zeros(grid.shape, dtype=np.float32)
    vol[grid.mask] = values
    vol[vol <= thresh] = 0
    labeled, n = ndimage.label(vol > 0, FACES)
    labels = labeled[grid.mask].astype(np.int32)
    sizes = np.bincount(labels, minlength=n + 1)[1:].astype(np.int64)
    masses = np.bincount(
        labels, weights=np.where(labels > 0, values - thresh, 0.0), minlength=n + 1
    )[1:]
    if min_size > 0 and n:
        keep = sizes > min_size
        remap = np.zeros(n + 1, dtype=np.int32)
        remap[1:][keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
        labels = remap[labels]
        sizes, masses = sizes[keep], masses[keep]
    return Clusters(labels, sizes, masses)


def cluster_p_map(clusters: Clusters, cluster_values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Per-voxel FWE p of the cluster each voxel belongs to (p = 1 outside clusters).

    NiMARE gives background voxels the p of value 0 against the null; with a clipped null
    that is 1 - 1/n. We follow it exactly: background value 0.
    """
    values = np.r_[0.0, np.asarray(cluster_values, dtype=np.float64)]
    p_per_label = null_to_p(values, null)
    return p_per_label[clusters.labels]


@dataclass
class FWEMaps:
    maps: dict[str, np.ndarray]  # name -> values over mask voxels
    cluster_p_size: np.ndarray  # per cluster
    cluster_p_mass: np.ndarray
    clusters: Clusters


def montecarlo_fwe_maps(
    stat: np.ndarray,
    grid: Grid,
    ss_thresh: float,
    null_max: np.ndarray,
    null_size: np.ndarray,
    null_mass: np.ndarray,
) -> FWEMaps:
    """Voxel- and cluster-level FWE maps as nimare CBMAEstimator.correct_fwe_montecarlo."""
    clusters = label_clusters(stat, grid, ss_thresh)
    p_vox = null_to_p(stat, null_max)
    p_size_cl = (
        null_to_p(clusters.sizes.astype(np.float64), null_size)
        if len(clusters.sizes)
        else np.zeros(0)
    )
    p_mass_cl = null_to_p(clusters.masses, null_mass) if len(clusters.masses) else np.zeros(0)
    p_size = cluster_p_map(clusters, clusters.sizes, null_size)
    p_mass = cluster_p_map(clusters, clusters.masses, null_mass)
    maps = {
        "z_level-voxel": p_to_z(p_vox).astype(np.float32),
        "logp_level-voxel": p_to_logp(p_vox),
        "z_desc-size_level-cluster": p_to_z(p_size).astype(np.float32),
        "logp_desc-size_level-cluster": p_to_logp(p_size),
        "z_desc-mass_level-cluster": p_to_z(p_mass).astype(np.float32),
        "logp_desc-mass_level-cluster": p_to_logp(p_mass),
        "p_level-voxel": p_vox,
        "p_desc-size_level-cluster": p_size,
    }
    return FWEMaps(maps, p_size_cl, p_mass_cl, clusters)
