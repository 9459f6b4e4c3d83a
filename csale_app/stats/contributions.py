"""Per-cluster contributions of experiments (GingerALE-style), as NiMARE 0.22's diagnostics.

* Jackknife (``nimare.diagnostics.Jackknife``): for experiment e and cluster C, the mean over
  the voxels v of C of ``1 - ALE_without_e(v) / ALE(v)`` (NaN/inf of the ratio set to 0 as
  ``np.nan_to_num`` does, so a voxel with ALE 0 counts 1). NiMARE averages the voxelwise
  proportions (it does not divide summed ALE values) and uses the unthresholded ALE map
  ("stat") as the statistic, whatever the target image that defines the clusters.
* FocusCounter (``nimare.diagnostics.FocusCounter``): the number of e's foci whose (rounded)
  voxel lies in C.

Leaving one experiment out only changes the voxels it touches, so ALE without e is
``1 - exp(L - log1p(-MA_e))`` there (L = sum over experiments of log1p(-MA)) and the
whole table costs one pass over the MA values instead of one ALE per experiment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..kernels.plan import Grid
from .ale import MAMaps
from .ale import log_sums as ale_log_sums

COLUMNS = ["cluster_id", "experiment_id", "jackknife", "n_foci_in_cluster"]


def jackknife(
    ma: MAMaps, cluster_labels: np.ndarray, stat: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(cluster ids, array (n_experiments, n_clusters)) of NiMARE's Jackknife values."""
    labels = np.asarray(cluster_labels)
    ids = np.unique(labels[labels > 0]).astype(np.int64)
    n_exp = ma.n_experiments
    out = np.zeros((n_exp, len(ids)), dtype=np.float64)
    if len(ids) == 0:
        return ids, out
    col_of = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    col_of[ids] = np.arange(len(ids))
    sizes = np.bincount(col_of[labels[labels > 0]], minlength=len(ids)).astype(np.float64)

    log_sums = ale_log_sums(ma.cols, ma.vals, ma.n_mask, float64_log=True)
    ale = (
        (1.0 - np.exp(log_sums)).astype(np.float32)
        if stat is None
        else np.asarray(stat, dtype=np.float32)
    )
    # Voxels of a cluster with ALE 0: 0/0 -> nan -> 0, so 1 - 0 = 1 for every experiment.
    zero = (labels > 0) & (ale == 0)
    if zero.any():
        out += np.bincount(col_of[labels[zero]], minlength=len(ids))[None, :]
    for e in range(n_exp):
        cols, vals = ma.row(e)
        lab = labels[cols]
        sel = (lab > 0) & (ale[cols] != 0)
        if not sel.any():
            continue
        c = cols[sel]
        without = 1.0 - np.exp(log_sums[c] - np.log1p(-vals[sel].astype(np.float64)))
        with np.errstate(divide="ignore", invalid="ignore"):
            prop = np.nan_to_num(np.true_divide(without.astype(np.float32), ale[c]))
        out[e] += np.bincount(
            col_of[lab[sel]], weights=(1.0 - prop).astype(np.float64), minlength=len(ids)
        )
    return ids, out / sizes[None, :]


def focus_counts(
    cluster_labels: np.ndarray,
    grid: Grid,
    foci_ijk: np.ndarray,
    focus_start: np.ndarray,
    ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cluster ids, array (n_experiments, n_clusters)) of foci inside each cluster."""
    labels = np.asarray(cluster_labels)
    if ids is None:
        ids = np.unique(labels[labels > 0]).astype(np.int64)
    n_exp = len(focus_start) - 1
    out = np.zeros((n_exp, len(ids)), dtype=np.int64)
    if len(ids) == 0 or len(foci_ijk) == 0:
        return ids, out
    vol = grid.to_volume(labels.astype(np.int64), fill=0)
    ijk = np.asarray(foci_ijk, dtype=np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(grid.shape)), axis=1)
    focus_label = np.zeros(len(ijk), dtype=np.int64)
    focus_label[inside] = vol[tuple(ijk[inside].T)]
    exp_of_focus = np.repeat(np.arange(n_exp), np.diff(focus_start))
    col_of = {int(k): i for i, k in enumerate(ids)}
    for e, lab in zip(exp_of_focus, focus_label):
        if lab in col_of:
            out[e, col_of[lab]] += 1
    return ids, out


def contributions(
    ma: MAMaps,
    cluster_labels: np.ndarray,
    experiment_ids: list[str],
    grid: Grid,
    foci_ijk: np.ndarray,
    focus_start: np.ndarray,
    stat: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long table: cluster_id, experiment_id, jackknife (share), n_foci_in_cluster.

    ``cluster_labels``: cluster id per mask voxel (0 = none). ``stat``: the ALE map the
    clusters came from (default: recomputed from ``ma``). One row per cluster and
    experiment, sorted by cluster then decreasing Jackknife share.
    """
    ids, jk = jackknife(ma, cluster_labels, stat)
    _, fc = focus_counts(cluster_labels, grid, foci_ijk, focus_start, ids)
    if len(ids) == 0:
        return pd.DataFrame(columns=COLUMNS)
    n_exp = len(experiment_ids)
    df = pd.DataFrame(
        {
            "cluster_id": np.tile(ids, n_exp),
            "experiment_id": np.repeat(np.asarray(experiment_ids, dtype=object), len(ids)),
            "jackknife": jk.reshape(-1),
            "n_foci_in_cluster": fc.reshape(-1),
        }
    )
    df = df.sort_values(["cluster_id", "jackknife"], ascending=[True, False], kind="stable")
    return df.reset_index(drop=True)


def summarize(contrib: pd.DataFrame, top: int = 5, min_share: float = 0.0) -> pd.Series:
    """Per cluster id: "exp (23.1 %, 2 foci); ..." for the ``top`` experiments by share.

    Only experiments with a share > ``min_share`` or at least one focus are listed.
    """
    out = {}
    for cid, grp in contrib.groupby("cluster_id", sort=True):
        grp = grp[(grp["jackknife"] > min_share) | (grp["n_foci_in_cluster"] > 0)]
        grp = grp.sort_values(["jackknife", "n_foci_in_cluster"], ascending=False).head(top)
        out[cid] = "; ".join(
            f"{r.experiment_id} ({100 * r.jackknife:.1f} %, {int(r.n_foci_in_cluster)} "
            f"{'focus' if int(r.n_foci_in_cluster) == 1 else 'foci'})"
            for r in grp.itertuples()
        )
    return pd.Series(out, name="contributions", dtype=object)
