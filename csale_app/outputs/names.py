"""Every output name in one place: the BIDS file names the writer uses, the map names the API
hands out (with NiMARE's names as aliases), and the patterns the report reads them back by.
"""

from __future__ import annotations

import re

SPACE_ENT = "space-MNI152NLin6Asym_res-2"
STATMAP_SUFFIX = "_statmap.nii.gz"

# ---- map names (the ``stat-...`` part of the BIDS file name) -------------------------------
ALE_MAPS = (
    "stat-ale", "stat-z", "stat-p", "stat-logp",
    "stat-z_level-voxel_corr-FWE", "stat-logp_level-voxel_corr-FWE",
    "stat-z_level-cluster_corr-FWE_desc-size", "stat-logp_level-cluster_corr-FWE_desc-size",
    "stat-z_level-cluster_corr-FWE_desc-mass", "stat-logp_level-cluster_corr-FWE_desc-mass",
    "stat-z_desc-thresholded",
)
CSALE_MAPS = (
    "stat-ale", "stat-z", "stat-p", "stat-logp",
    "stat-z_level-voxel_corr-FWE", "stat-logp_level-voxel_corr-FWE",
    "stat-z_level-cluster_corr-FWE_desc-size", "stat-logp_level-cluster_corr-FWE_desc-size",
    "stat-z_desc-thresholded", "stat-z_desc-extentthresholded", "stat-prob_desc-baserate",
)
SUBSAMPLE_MAP = "stat-prob_desc-subsamples"
THRESHOLDED = "stat-z_desc-thresholded"

#: NiMARE 0.22's map names (MetaResult.maps after ALE + FWECorrector(montecarlo)) -> ours.
NIMARE_ALIASES = {
    "stat": "stat-ale",
    "z": "stat-z",
    "p": "stat-p",
    "logp": "stat-logp",
    "z_level-voxel_corr-FWE_method-montecarlo": "stat-z_level-voxel_corr-FWE",
    "logp_level-voxel_corr-FWE_method-montecarlo": "stat-logp_level-voxel_corr-FWE",
    "z_desc-size_level-cluster_corr-FWE_method-montecarlo":
        "stat-z_level-cluster_corr-FWE_desc-size",
    "logp_desc-size_level-cluster_corr-FWE_method-montecarlo":
        "stat-logp_level-cluster_corr-FWE_desc-size",
    "z_desc-mass_level-cluster_corr-FWE_method-montecarlo":
        "stat-z_level-cluster_corr-FWE_desc-mass",
    "logp_desc-mass_level-cluster_corr-FWE_method-montecarlo":
        "stat-logp_level-cluster_corr-FWE_desc-mass",
}

# ---- table names (the part after the studyset/MACM prefix) ---------------------------------
INPUT_FOCI = "desc-input_foci"
EXPERIMENTS_TABLE = "desc-experiments_table"
MACM_EXPERIMENTS = "experiments"
TABLE_KINDS = ("clusters", "peaks", "contributions", "lobules")
LOBULES = "lobules"  # significant voxels per SUIT lobule (cerebellar results only)
NULL_VALUES = "desc-null_values"


def map_name(name: str) -> str:
    """Our map name for ``name`` given as ours, without ``stat-``, or as NiMARE's."""
    if name in NIMARE_ALIASES:
        return NIMARE_ALIASES[name]
    return name if name.startswith("stat-") else f"stat-{name}"


def prefix(label: str, macm: str | None = None) -> str:
    return f"studyset-{label}" + (f"_macm-{macm}" if macm else "")


def map_filename(label: str, meta: str, stat: str, macm: str | None = None) -> str:
    return f"{prefix(label, macm)}_{SPACE_ENT}_meta-{meta}_{stat}{STATMAP_SUFFIX}"


def analysis_table(meta: str, kind: str) -> str:
    """Table part for an analysis table: clusters/peaks/contributions carry the space."""
    if kind == NULL_VALUES:
        return f"meta-{meta}_{NULL_VALUES}"
    return f"{SPACE_ENT}_meta-{meta}_{kind}"


def table_filename(label: str, part: str, macm: str | None = None) -> str:
    return f"{prefix(label, macm)}_{part}.tsv"


def roi_mask_filename(label: str, roi_label: str) -> str:
    return f"{prefix(label)}_roi-{roi_label}_mask.nii.gz"


def seed_mask_filename(label: str, macm: str) -> str:
    return f"{prefix(label, macm)}_mask.nii.gz"


# ---- reading names back (report) ------------------------------------------------------------
MAP_PATTERN = re.compile(r"_meta-(?P<meta>[A-Za-z0-9]+)_(?P<part>.+)_statmap\.nii\.gz$")
TABLE_PATTERN = re.compile(r"_meta-(?P<meta>[A-Za-z0-9]+)_(?P<kind>clusters|peaks|"
                           r"contributions|lobules|desc-null_values)\.tsv$")
