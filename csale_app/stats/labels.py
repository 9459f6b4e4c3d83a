"""Atlas labels for peaks and clusters: the atlases' label codes (read and resampled onto
the 2 mm template by :mod:`csale_app.io.atlases`) looked up at peaks and counted over
cluster voxels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io.atlases import ATLASES, UNLABELLED, load_atlas, template_affine
from ..kernels.plan import Grid


def label_at(coords, *, space: str = "mm", affine: np.ndarray | None = None):
    """Atlas labels at a point: ``{"ho_cortical": ..., "aal3_subcortical": ..., ...}``.

    ``coords`` is one point (x, y, z in mm, or i, j, k with ``space="ijk"``) or an (n, 3)
    array, which gives a list of dicts. mm coordinates go to the nearest template voxel.
    A point without a label (or outside the grid) gets ``"unlabelled"``.
    """
    affine = template_affine() if affine is None else np.asarray(affine)
    pts = np.asarray(coords, dtype=np.float64)
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    if space == "mm":
        inv = np.linalg.inv(affine)
        ijk = np.round(pts @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    elif space == "ijk":
        ijk = np.round(pts).astype(np.int64)
    else:
        raise ValueError("space must be 'mm' or 'ijk'")
    x_mm = ijk @ affine[0, :3] + affine[0, 3]
    atlases = [load_atlas(k) for k in ATLASES]
    out = [{a.key: a.name_at(v, x) for a in atlases} for v, x in zip(ijk, x_mm)]
    return out[0] if single else out


def composition_counts(mask: np.ndarray, affine: np.ndarray | None = None) -> pd.DataFrame:
    """Voxel counts per label of a 3D boolean mask on the template grid.

    Each voxel gets one label: the first atlas in :data:`ATLASES` order that labels it
    (cerebellar, then subcortical, then cortical), else ``"unlabelled"``. Columns: atlas,
    label, n_voxels, percent; sorted by decreasing count.
    """
    affine = template_affine() if affine is None else np.asarray(affine)
    mask = np.asarray(mask, dtype=bool)
    ijk = np.argwhere(mask)
    n = len(ijk)
    if n == 0:
        return pd.DataFrame(columns=["atlas", "label", "n_voxels", "percent"])
    x_mm = ijk @ affine[0, :3] + affine[0, 3]
    assigned = np.zeros(n, dtype=bool)
    rows = []
    for key in ATLASES:
        atlas = load_atlas(key)
        if atlas.data.shape != mask.shape:
            raise ValueError(f"mask shape {mask.shape} is not the template's {atlas.data.shape}")
        codes = atlas.data[tuple(ijk.T)]
        take = (codes > 0) & ~assigned
        assigned |= take
        names = [atlas.name(int(c), float(x)) for c, x in zip(codes[take], x_mm[take])]
        for name, count in pd.Series(names, dtype=object).value_counts().items():
            rows.append((key, name, int(count)))
    if (~assigned).any():
        rows.append(("none", UNLABELLED, int((~assigned).sum())))
    df = pd.DataFrame(rows, columns=["atlas", "label", "n_voxels"])
    df["percent"] = 100.0 * df["n_voxels"] / n
    return df.sort_values(
        ["n_voxels", "label"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def cluster_composition(mask: np.ndarray, top: int = 5, affine: np.ndarray | None = None) -> str:
    """e.g. ``"62% Left Cerebellum VI; 30% Left Crus I; 8% unlabelled"``.

    The ``top`` labels of each atlas, combined and sorted; the rest is summed as ``other``.
    Entries under 0.5 % are left out.
    """
    df = composition_counts(mask, affine)
    if df.empty:
        return ""
    keep = df[df["atlas"] != "none"].groupby("atlas", sort=False).head(top)
    parts = [(r.percent, r.label) for r in keep.itertuples()]
    rest = df.drop(index=keep.index)
    other = rest.loc[rest["atlas"] != "none", "percent"].sum()
    none = rest.loc[rest["atlas"] == "none", "percent"].sum()
    parts.sort(key=lambda t: -t[0])
    if other > 0:
        parts.append((other, "other"))
    if none > 0:
        parts.append((none, UNLABELLED))
    return "; ".join(f"{p:.0f}% {name}" for p, name in parts if p >= 0.5)


def _local_maxima(values: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Indices (into ``values``) of voxels >= all their 26 neighbours within the set."""
    lo = ijk.min(axis=0)
    box = ijk.max(axis=0) - lo + 3
    vol = np.full(tuple(box), -np.inf)
    loc = ijk - lo + 1
    vol[tuple(loc.T)] = values
    best = np.full(len(values), -np.inf)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for dk in (-1, 0, 1):
                if di == dj == dk == 0:
                    continue
                nb = vol[loc[:, 0] + di, loc[:, 1] + dj, loc[:, 2] + dk]
                np.maximum(best, nb, out=best)
    return np.flatnonzero(values >= best)


def cluster_peaks(
    values: np.ndarray,
    xyz: np.ndarray,
    ijk: np.ndarray,
    min_distance_mm: float = 8.0,
    max_subpeaks: int = 3,
) -> np.ndarray:
    """Indices of the peak and up to ``max_subpeaks`` local maxima >= ``min_distance_mm`` apart.

    Candidates are local maxima (26-neighbourhood), sorted by decreasing value (ties: first
    in mask order, so the peak is ``argmax``); each is kept when it lies at least
    ``min_distance_mm`` from every one kept before.
    """
    cand = _local_maxima(values, ijk)
    cand = cand[np.lexsort((cand, -values[cand]))]
    kept: list[int] = []
    for c in cand:
        if len(kept) > max_subpeaks:
            break
        if kept and np.min(np.linalg.norm(xyz[kept] - xyz[c], axis=1)) < min_distance_mm:
            continue
        kept.append(int(c))
    return np.array(kept, dtype=np.int64)


def _label_columns(xyz: np.ndarray, prefix: str) -> dict[str, list[str]]:
    labels = label_at(xyz) if len(xyz) else []
    return {f"{prefix}{k}": [d[k] for d in labels] for k in ATLASES}


def peaks_table(
    stat_over_mask: np.ndarray,
    labels_over_mask: np.ndarray,
    grid: Grid,
    affine: np.ndarray,
    min_distance_mm: float = 8.0,
    max_subpeaks: int = 3,
    value_name: str = "value",
) -> pd.DataFrame:
    """Peak and sub-peaks of every cluster, with atlas labels.

    ``labels_over_mask``: cluster id per mask voxel (0 = none). Columns: cluster_id, peak_id
    ("3", "3a", "3b", ...), x, y, z (mm), ``value_name``, label_<atlas> for each atlas.
    """
    stat = np.asarray(stat_over_mask, dtype=np.float64)
    labels = np.asarray(labels_over_mask)
    ids = np.unique(labels[labels > 0])
    rows = []
    for k in ids:
        members = np.flatnonzero(labels == k)
        ijk = grid.mask_ijk[members].astype(np.int64)
        xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
        for n, p in enumerate(
            cluster_peaks(stat[members], xyz, ijk, min_distance_mm, max_subpeaks)
        ):
            suffix = "" if n == 0 else chr(ord("a") + n - 1)
            rows.append(
                {
                    "cluster_id": int(k),
                    "peak_id": f"{int(k)}{suffix}",
                    "x": float(xyz[p, 0]),
                    "y": float(xyz[p, 1]),
                    "z": float(xyz[p, 2]),
                    value_name: float(stat[members[p]]),
                }
            )
    cols = ["cluster_id", "peak_id", "x", "y", "z", value_name]
    df = pd.DataFrame(rows, columns=cols)
    for col, vals in _label_columns(df[["x", "y", "z"]].to_numpy(), "label_").items():
        df[col] = vals
    return df


def add_labels(
    cluster_df: pd.DataFrame,
    labels_over_mask: np.ndarray,
    grid: Grid,
    affine: np.ndarray,
    label_column: str = "label",
) -> pd.DataFrame:
    """``cluster_table`` output + peak_label_<atlas> per atlas + ``composition``.

    The cluster's voxels are those of ``labels_over_mask == cluster_df[label_column]``
    (``cluster_table`` keeps the original label in ``label``); without that column,
    ``cluster_id`` is used.
    """
    df = cluster_df.copy()
    if df.empty:
        for k in ATLASES:
            df[f"peak_label_{k}"] = pd.Series(dtype=object)
        df["composition"] = pd.Series(dtype=object)
        return df
    col = label_column if label_column in df.columns else "cluster_id"
    xyz = df[["peak_x", "peak_y", "peak_z"]].to_numpy(dtype=np.float64)
    for name, vals in _label_columns(xyz, "peak_label_").items():
        df[name] = vals
    labels = np.asarray(labels_over_mask)
    comps = []
    for k in df[col].to_numpy(dtype=int):
        comps.append(cluster_composition(grid.to_volume(labels == k, fill=False), affine=affine))
    df["composition"] = comps
    return df
