"""Cluster tables from labelled maps (arrays in, DataFrames out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..kernels.plan import Grid


def voxel_to_mm(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def cluster_table(
    labels: np.ndarray,
    stat: np.ndarray,
    grid: Grid,
    affine: np.ndarray,
    cluster_p: np.ndarray | None = None,
    p_name: str = "p_fwe",
    value_name: str = "peak_value",
    keep: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per cluster: id, size (voxels, mm3), peak x/y/z and value, weighted centre, p.

    ``labels`` are per mask voxel (0 = none, k = cluster k); ``keep`` optionally selects the
    clusters reported (bool per cluster). Clusters are renumbered by decreasing size.
    """
    voxel_mm3 = round(float(abs(np.linalg.det(affine[:3, :3]))), 6)
    n = int(labels.max()) if labels.size else 0
    rows = []
    for k in range(1, n + 1):
        if keep is not None and not keep[k - 1]:
            continue
        members = np.flatnonzero(labels == k)
        values = stat[members].astype(np.float64)
        peak = members[int(np.argmax(values))]
        xyz = voxel_to_mm(grid.mask_ijk[peak], affine)[0]
        w = np.clip(values, 0, None)
        w = w / w.sum() if w.sum() > 0 else np.full(len(values), 1 / len(values))
        centre = (voxel_to_mm(grid.mask_ijk[members], affine) * w[:, None]).sum(axis=0)
        row = {
            "size_voxels": len(members),
            "size_mm3": len(members) * voxel_mm3,
            "peak_x": xyz[0],
            "peak_y": xyz[1],
            "peak_z": xyz[2],
            value_name: float(stat[peak]),
            "centre_x": round(centre[0], 2),
            "centre_y": round(centre[1], 2),
            "centre_z": round(centre[2], 2),
            "label": k,
        }
        if cluster_p is not None:
            row[p_name] = float(cluster_p[k - 1])
        rows.append(row)
    columns = [
        "cluster_id",
        "size_voxels",
        "size_mm3",
        "peak_x",
        "peak_y",
        "peak_z",
        value_name,
        "centre_x",
        "centre_y",
        "centre_z",
    ]
    if cluster_p is not None:
        columns.append(p_name)
    if not rows:
        return pd.DataFrame(columns=columns + ["label"])
    df = pd.DataFrame(rows).sort_values(["size_voxels", value_name], ascending=False)
    df.insert(0, "cluster_id", np.arange(1, len(df) + 1))
    return df[columns + ["label"]].reset_index(drop=True)


def reported_clusters(
    parent_labels: np.ndarray,
    significant: np.ndarray,
    stat: np.ndarray,
    grid: Grid,
    affine: np.ndarray,
    report_mask: np.ndarray | None,
    parent_p: dict[str, np.ndarray],
    value_name: str,
    sizes: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The cluster table and per-voxel cluster ids of what is *reported*.

    Inference is done on clusters of the whole analysis mask (``parent_labels``, with
    ``significant`` per cluster and their p-values in ``parent_p``); what is reported is the
    significant voxels inside ``report_mask`` (the ROI), split into faces-connected
    components. So each table row is one connected component of the saved thresholded map,
    with its voxel count, and its peak lies in it; its p-values are those of the cluster
    of the analysis mask it belongs to (``analysis_cluster_size_voxels`` when an ROI cuts
    it). Returns the table (clusters renumbered by size, ``cluster_id``) and the labels.
    """
    from scipy import ndimage

    from .inference import FACES

    keep = np.isin(parent_labels, np.flatnonzero(significant) + 1)
    if report_mask is not None:
        keep &= report_mask
    vol = np.zeros(grid.shape, dtype=bool)
    vol[grid.mask] = keep
    comp_vol, n = ndimage.label(vol, FACES)
    comp = comp_vol[grid.mask].astype(np.int32)
    first = np.zeros(n + 1, dtype=np.int64)
    if n:
        idx = np.flatnonzero(comp)
        order = np.unique(comp[idx], return_index=True)[1]
        first[1:] = idx[order]
    parent = parent_labels[first[1:]] if n else np.zeros(0, dtype=np.int64)
    names = list(parent_p)
    table = cluster_table(
        comp,
        stat,
        grid,
        affine,
        cluster_p=parent_p[names[0]][parent - 1] if n else np.zeros(0),
        p_name=names[0],
        value_name=value_name,
    )
    if len(table):
        lab = table["label"].to_numpy(dtype=int)
        for name in names[1:]:
            table[name] = parent_p[name][parent[lab - 1] - 1]
        if report_mask is not None:
            table["analysis_cluster_size_voxels"] = sizes[parent[lab - 1] - 1].astype(int)
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[table["label"].to_numpy(dtype=int)] = table["cluster_id"].to_numpy(dtype=int)
    return table.drop(columns="label"), remap[comp]
