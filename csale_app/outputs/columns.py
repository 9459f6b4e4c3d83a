"""Descriptions of the columns of every TSV the app writes (for the JSON sidecars, BIDS
"tabular files": one key per column with Description and, where there are any, Units)."""

from __future__ import annotations

import re

import pandas as pd

_MM = {"Units": "mm"}
COLUMNS: dict[str, dict] = {
    "study_id": {"Description": "study identifier as given in the input"},
    "contrast_id": {"Description": "contrast identifier as given in the input"},
    "contrast_ids": {
        "Description": "contrasts of the study pooled into this experiment "
        "('|'-separated; one when contrasts are not merged)"
    },
    "experiment_id": {
        "Description": "experiment identifier (the study, or study-contrast "
        "without contrast merging)"
    },
    "x": {"Description": "x coordinate", **_MM},
    "y": {"Description": "y coordinate", **_MM},
    "z": {"Description": "z coordinate", **_MM},
    "x_mni": {
        "Description": "x in MNI space (after tal2icbm where the input was Talairach)",
        **_MM,
    },
    "y_mni": {"Description": "y in MNI space", **_MM},
    "z_mni": {"Description": "z in MNI space", **_MM},
    "i": {"Description": "voxel index (template grid, 2 mm)"},
    "j": {"Description": "voxel index (template grid, 2 mm)"},
    "k": {"Description": "voxel index (template grid, 2 mm)"},
    "space": {"Description": "coordinate space of the input (MNI or TAL)"},
    "converted_from": {"Description": "conversion applied to reach MNI space, if any"},
    "in_template": {"Description": "whether the focus lies inside the template's bounding box"},
    "sample_size": {
        "Description": "number of subjects (merged experiments: rounded mean over "
        "their contrasts); sets the kernel width"
    },
    "sample_size_source": {
        "Description": "where the sample size came from: the input, or "
        "--default-sample-size (the input had none)"
    },
    "weight": {
        "Description": "the study's weight for the term in the feature set "
        "(tf-idf for Neurosynth's terms)"
    },
    "source_file": {"Description": "input file the row came from"},
    "source_line": {"Description": "line (or record) of the input file"},
    "n_foci": {"Description": "foci of the experiment inside the template"},
    "n_foci_dropped": {"Description": "foci outside the template's bounding box (dropped)"},
    "n_foci_in_analysis_mask": {
        "Description": "foci inside the analysis mask (the ROI "
        "dilated); experiments with none are not "
        "analysed"
    },
    "status": {"Description": "'kept' = analysed; otherwise why the experiment was not"},
    "foci_in_seed": {"Description": "foci of the experiment inside the MACM seed"},
    "selected": {"Description": "whether the experiment was selected for the MACM"},
    "cluster_id": {"Description": "cluster number (1 = largest), as in the cluster table"},
    "label": {"Description": "cluster label in the connected-component labelling"},
    "size_voxels": {"Description": "cluster size", "Units": "voxels"},
    "size_mm3": {"Description": "cluster volume", "Units": "mm^3"},
    "peak_x": {"Description": "x of the cluster's peak", **_MM},
    "peak_y": {"Description": "y of the cluster's peak", **_MM},
    "peak_z": {"Description": "z of the cluster's peak", **_MM},
    "peak_ale": {"Description": "ALE value at the cluster's peak"},
    "centre_x": {"Description": "x of the cluster's centre of mass", **_MM},
    "centre_y": {"Description": "y of the cluster's centre of mass", **_MM},
    "centre_z": {"Description": "z of the cluster's centre of mass", **_MM},
    "p_fwe_size": {"Description": "cluster-level FWE p of the cluster size"},
    "p_fwe_mass": {"Description": "cluster-level FWE p of the cluster mass"},
    "composition": {"Description": "share of the cluster's voxels per atlas label"},
    "top_contributors": {
        "Description": "experiments contributing most (jackknife share, foci in the cluster)"
    },
    "peak_id": {"Description": "peak ('3') or sub-peak ('3a', '3b') of the cluster"},
    "ale": {"Description": "ALE value at the peak"},
    "value": {"Description": "statistic value at the peak"},
    "jackknife": {
        "Description": "share of the cluster's ALE lost when the experiment is left "
        "out (mean over the cluster's voxels)"
    },
    "n_foci_in_cluster": {"Description": "foci of the experiment inside the cluster"},
    "max_ale": {"Description": "maximum ALE of the permutation (voxel-level FWE null)"},
    "max_cluster_size": {
        "Description": "largest supra-threshold cluster of the permutation "
        "(cluster-level FWE null)",
        "Units": "voxels",
    },
    "max_cluster_mass": {"Description": "largest cluster mass of the permutation"},
    "lobule": {
        "Description": "SUIT cerebellar lobule (Diedrichsen 2009), or 'outside the "
        "SUIT lobules' for the significant voxels in none"
    },
    "suit_label": {"Description": "label value of the lobule in the SUIT atlas (0: none)"},
    "n_voxels": {"Description": "significant voxels of the map in the lobule", "Units": "voxels"},
    "lobule_voxels": {
        "Description": "voxels of the lobule on the 2 mm template grid",
        "Units": "voxels",
    },
    "percent_of_lobule": {"Description": "n_voxels as a share of the lobule", "Units": "%"},
    "percent_of_result": {
        "Description": "n_voxels as a share of the map's significant "
        "voxels (the column adds up to 100)",
        "Units": "%",
    },
}

TABLES = [
    (r"_desc-input_foci\.tsv$", "Parsed foci with original IDs, MNI coordinates and grid position"),
    (
        r"_desc-experiments_table\.tsv$",
        "One row per experiment of the studyset: what was analysed and why any experiment was not",
    ),
    (
        r"_desc-extent_clusters\.tsv$",
        "Clusters of the cluster-extent map (the study's rule: "
        "ROI first, p < voxel threshold, faces connectivity, "
        "more than K voxels), one row per connected component, "
        "with peak, centre, labels",
    ),
    (
        r"_desc-subsamples_correlations\.tsv$",
        "One row per C-SALE subsample: experiments, "
        "null seed, z-map correlation with the full "
        "sample, voxels surviving each rule",
    ),
    (r"_clusters\.tsv$", "Significant clusters (cluster-level FWE) with peak, centre, labels"),
    (r"_peaks\.tsv$", "Peaks and sub-peaks (>= 8 mm apart) of every significant cluster"),
    (r"_contributions\.tsv$", "Contribution of each experiment to each cluster"),
    (
        r"_lobules\.tsv$",
        "Significant voxels of the thresholded map per SUIT cerebellar "
        "lobule: count, share of the lobule, share of the result",
    ),
    (
        r"_desc-null_values\.tsv$",
        "Per-permutation maxima of the null distribution (one row per permutation)",
    ),
    (r"_experiments\.tsv$", "Experiments of the reference database selected by the MACM seed"),
]


def describe_table(name: str, df: pd.DataFrame) -> dict:
    """A sidecar for the table ``name`` (file name) with columns ``df.columns``."""
    side: dict = {}
    for pattern, text in TABLES:
        if re.search(pattern, name):
            side["Description"] = text
            break
    for col in df.columns:
        col = str(col)
        if col in COLUMNS:
            side[col] = dict(COLUMNS[col])
        elif col.startswith(("peak_label_", "label_")):
            atlas = col.split("label_", 1)[1]
            side[col] = {"Description": f"atlas label ({atlas}) at the peak"}
        else:
            side[col] = {"Description": col.replace("_", " ")}
    return side
