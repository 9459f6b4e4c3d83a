"""Every output name in one place: the BIDS file names the writer uses, the map names the API
hands out (with NiMARE's names as aliases), and the patterns the report reads them back by.
"""

from __future__ import annotations

import re

SPACE_ENT = "space-MNI152NLin6Asym_res-2"
STATMAP_SUFFIX = "_statmap.nii.gz"

# ---- map names (the ``stat-...`` part of the BIDS file name) -------------------------------
# The stats modules key their maps by these names, the writer turns them into file names
# (map_filename) and the report looks maps up by them: one spelling for all three.
ALE_STAT = "stat-ale"
Z = "stat-z"
P = "stat-p"
LOGP = "stat-logp"
Z_VOXEL_FWE = "stat-z_level-voxel_corr-FWE"
LOGP_VOXEL_FWE = "stat-logp_level-voxel_corr-FWE"
Z_CLUSTER_SIZE_FWE = "stat-z_level-cluster_corr-FWE_desc-size"
LOGP_CLUSTER_SIZE_FWE = "stat-logp_level-cluster_corr-FWE_desc-size"
Z_CLUSTER_MASS_FWE = "stat-z_level-cluster_corr-FWE_desc-mass"
LOGP_CLUSTER_MASS_FWE = "stat-logp_level-cluster_corr-FWE_desc-mass"
#: z where the voxel lies in a significant cluster (cluster-level FWE), else 0.
THRESHOLDED = "stat-z_desc-thresholded"
#: C-SALE: z where the voxel lies in a cluster of the study's cluster-extent rule, else 0.
EXTENT_THRESHOLDED = "stat-z_desc-extentthresholded"
#: C-SALE: the base rate (expected ALE under the database's null) per voxel.
BASERATE = "stat-prob_desc-baserate"

ALE_MAPS = (
    ALE_STAT,
    Z,
    P,
    LOGP,
    Z_VOXEL_FWE,
    LOGP_VOXEL_FWE,
    Z_CLUSTER_SIZE_FWE,
    LOGP_CLUSTER_SIZE_FWE,
    Z_CLUSTER_MASS_FWE,
    LOGP_CLUSTER_MASS_FWE,
    THRESHOLDED,
)
CSALE_MAPS = (
    ALE_STAT,
    Z,
    P,
    LOGP,
    Z_VOXEL_FWE,
    LOGP_VOXEL_FWE,
    Z_CLUSTER_SIZE_FWE,
    LOGP_CLUSTER_SIZE_FWE,
    THRESHOLDED,
    EXTENT_THRESHOLDED,
    BASERATE,
)
#: Share of subsamples in which a voxel survives, per rule: the study's cluster-extent rule
#: (stat-z_desc-extentthresholded) and cluster-level FWE (stat-z_desc-thresholded).
SUBSAMPLE_EXTENT_MAP = "stat-prob_desc-subsamplesextent"
SUBSAMPLE_FWE_MAP = "stat-prob_desc-subsamplesclusterfwe"
SUBSAMPLE_MAPS = (SUBSAMPLE_EXTENT_MAP, SUBSAMPLE_FWE_MAP)
#: Neurosynth's statistics (meta-mkdachi2): posterior/conditional probabilities, the two
#: chi-square tests and their FDR-thresholded z maps (zero where not significant).
MKDACHI2_TESTS = ("uniformity", "association")
MKDACHI2_PROBABILITIES = ("A", "AgF", "FgA", "AgFprior", "FgAprior")
MKDACHI2_TEST_STATS = ("chi2", "p", "logp", "z")


def mkdachi2_probability(which: str) -> str:
    """The map of one of :data:`MKDACHI2_PROBABILITIES` (``"FgAprior"``: the posterior)."""
    return f"stat-prob_desc-{which}"


def mkdachi2_test(stat: str, test: str) -> str:
    """The ``stat`` (chi2, p, logp or z) map of a chi-square ``test``."""
    return f"stat-{stat}_desc-{test}"


def mkdachi2_fdr(test: str) -> str:
    """The FDR-thresholded z map of a chi-square ``test`` (0 where not significant)."""
    return f"stat-z_desc-{test}_level-voxel_corr-FDR"


MKDACHI2_MAPS = (
    tuple(mkdachi2_probability(p) for p in MKDACHI2_PROBABILITIES)
    + tuple(mkdachi2_test(s, t) for t in MKDACHI2_TESTS for s in MKDACHI2_TEST_STATS)
    + tuple(mkdachi2_fdr(t) for t in MKDACHI2_TESTS)
)

#: NiMARE 0.22's map names (MetaResult.maps after ALE + FWECorrector(montecarlo)) -> ours.
NIMARE_ALIASES = {
    "stat": "stat-ale",
    "z": "stat-z",
    "p": "stat-p",
    "logp": "stat-logp",
    "z_level-voxel_corr-FWE_method-montecarlo": "stat-z_level-voxel_corr-FWE",
    "logp_level-voxel_corr-FWE_method-montecarlo": "stat-logp_level-voxel_corr-FWE",
    "z_desc-size_level-cluster_corr-FWE_method-montecarlo": "stat-z_level-cluster_corr-FWE_desc-size",  # noqa: E501
    "logp_desc-size_level-cluster_corr-FWE_method-montecarlo": "stat-logp_level-cluster_corr-FWE_desc-size",  # noqa: E501
    "z_desc-mass_level-cluster_corr-FWE_method-montecarlo": "stat-z_level-cluster_corr-FWE_desc-mass",  # noqa: E501
    "logp_desc-mass_level-cluster_corr-FWE_method-montecarlo": "stat-logp_level-cluster_corr-FWE_desc-mass",  # noqa: E501
}

# ---- table names (the part after the studyset/MACM prefix) ---------------------------------
INPUT_FOCI = "desc-input_foci"
EXPERIMENTS_TABLE = "desc-experiments_table"
TERM_STUDIES = "desc-termstudies_table"
MACM_EXPERIMENTS = "experiments"
LOBULES = "lobules"  # significant voxels per SUIT lobule (cerebellar results only)
NULL_VALUES = "desc-null_values"
#: One row per C-SALE subsample: its size, seed and the correlation of its z map.
SUBSAMPLE_TABLE = "desc-subsamples_correlations"
#: Clusters of C-SALE's cluster-extent map (one row per connected component of it).
EXTENT_CLUSTERS = "desc-extent_clusters"


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
    if kind in (NULL_VALUES, SUBSAMPLE_TABLE):
        return f"meta-{meta}_{kind}"
    return f"{SPACE_ENT}_meta-{meta}_{kind}"


def table_filename(label: str, part: str, macm: str | None = None) -> str:
    return f"{prefix(label, macm)}_{part}.tsv"


def roi_mask_filename(label: str, roi_label: str) -> str:
    return f"{prefix(label)}_roi-{roi_label}_mask.nii.gz"


def seed_mask_filename(label: str, macm: str) -> str:
    return f"{prefix(label, macm)}_mask.nii.gz"


# ---- reading names back (report) ------------------------------------------------------------
MAP_PATTERN = re.compile(r"_meta-(?P<meta>[A-Za-z0-9]+)_(?P<part>.+)_statmap\.nii\.gz$")
TABLE_PATTERN = re.compile(
    r"_meta-(?P<meta>[A-Za-z0-9]+)_(?P<kind>clusters|peaks|"
    r"contributions|lobules|desc-null_values|desc-extent_clusters|"
    r"desc-subsamples_correlations)\.tsv$"
)


# ---- dataset-level files (OUTPUT_DIR itself) -----------------------------------------------
DESCRIPTION = "dataset_description.json"
#: The dataset README (BIDS: README, README.md, README.rst or README.txt at the top level).
DATASET_README = "README.md"
#: The pybids config sits in ``code/``: BIDS's folder for code and configuration used on the
#: dataset (opaque to the validator). A JSON file at the top level would be read by BIDS as
#: an inherited sidecar without a data file (SIDECAR_WITHOUT_DATAFILE).
PYBIDS_CONFIG = "code/csale_app_pybids_config.json"
#: Where the config sat before; removed when a run writes into an older OUTPUT_DIR.
LEGACY_PYBIDS_CONFIG = "csale_app_pybids_config.json"
BIBLIOGRAPHY = "references.bib"

#: ``.bidsignore``: only what BIDS has no rule for, each pattern with the reason. Every other
#: top-level entry has a BIDS rule: dataset_description.json and README.md (modality-agnostic
#: files), code/ and logs/ (folders a derivative dataset may hold, not validated inside), the
#: hidden .csale_* files and folders (the validator skips dot files).
BIDSIGNORE = (
    (
        "BIDS defines no entity or folder for the results of a meta-analysis of a group of "
        "studies (no sub-/ses-), and the validator checks a folder's own name before its "
        "files: studyset-<S>/ holds those results, named by BIDS's rules (entity-label pairs, "
        "suffix, extension) with entities of their own, which the pybids config in "
        + PYBIDS_CONFIG
        + " indexes. (No trailing slash: bids-validator 3.0.2 tests a "
        "folder's path without it, so 'studyset-*/' would not match the folder.)",
        ("/studyset-*",),
    ),
    (
        "the HTML report (the entry page and any pages it links): BIDS has no rule for reports",
        ("*.html",),
    ),
    (
        "the report's per-studyset pages (report/studyset-<S>.html): the validator reports the "
        "folder itself as not included, whatever ignores its files (no trailing slash, as "
        "above)",
        ("/report",),
    ),
    ("the report's bibliography: BIDS has no rule for it", ("/" + BIBLIOGRAPHY,)),
)


#: Every result file's name: ``studyset-<S>`` then entity-label pairs, a suffix and an
#: extension (BIDS's naming rule; the entities are those of the pybids config).
RESULT_NAME = re.compile(
    r"^studyset-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*_[A-Za-z0-9]+"
    r"\.(?:nii\.gz|tsv|json)$"
)
