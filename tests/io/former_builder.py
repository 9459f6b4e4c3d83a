"""The experiment builder as it was before it was vectorized: one loop over experiments,
plainly written. Tests compare :func:`csale_app.io.experiments.build_experiments` with it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from csale_app.errors import InputError
from csale_app.io.experiments import (
    Experiments,
    fill_default_sample_size,
    mark_defaulted,
    place_foci,
)


def loop_build_experiments(
    foci: pd.DataFrame,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    merge_contrasts: bool = True,
    kernel_fwhm: float | None = None,
    default_sample_size: float | None = None,
) -> Experiments:
    """The former per-experiment loop (kept as the reference the vectorized builder must
    equal, array for array and table for table)."""
    foci = foci.copy()
    warnings: list[str] = []
    defaulted = fill_default_sample_size(foci, default_sample_size, kernel_fwhm)
    if kernel_fwhm is None:
        missing = foci["sample_size"].isna() | ~(foci["sample_size"] > 0)
        if missing.any():
            row = foci[missing].iloc[0]
            raise InputError(
                row["source_file"],
                int(row["source_line"]),
                f"experiment '{row['study_id']}' has no positive sample size "
                f"(got {row['sample_size']}); give one, or set --default-sample-size N "
                "or --kernel-fwhm MM",
            )
        # A sample size counts subjects: below 1 the kernel width (Eickhoff 2009) has no
        # meaning and overflows; non-integer sizes >= 1 are used as given (as NiMARE does),
        # merged experiments take the rounded mean (>= 1).
        tiny = ~(foci["sample_size"] >= 1) | ~np.isfinite(foci["sample_size"])
        if tiny.any():
            row = foci[tiny].iloc[0]
            raise InputError(
                row["source_file"],
                int(row["source_line"]),
                f"experiment '{row['study_id']}' has sample size {row['sample_size']:g}; a "
                "sample size counts subjects and must be a finite number >= 1",
            )
    place_foci(foci, affine, shape, merge_contrasts, warnings)

    rows, ids, studies, contrasts, sizes, starts = [], [], [], [], [], [0]
    kept_ijk, kept_xyz = [], []
    for exp_id, grp in foci.groupby("experiment_id", sort=True):
        per_contrast = grp.groupby("contrast_id", sort=False)["sample_size"].first()
        n = float(np.round(per_contrast.mean())) if merge_contrasts else float(per_contrast.mean())
        keep = grp["in_template"].to_numpy()
        row = {
            "experiment_id": exp_id,
            "study_id": str(grp["study_id"].iloc[0]),
            "contrast_ids": "|".join(str(c) for c in per_contrast.index),
            "sample_size": n if kernel_fwhm is None else np.nan,
            "n_foci": int(keep.sum()),
            "n_foci_dropped": int((~keep).sum()),
            "space": "|".join(sorted(set(grp["space"]))),
            "source_file": str(grp["source_file"].iloc[0]),
            "status": "kept" if keep.any() else "dropped: no foci inside the template",
        }
        rows.append(row)
        if not keep.any():
            warnings.append(f"experiment '{exp_id}' dropped: none of its foci lie in the template")
            continue
        ids.append(str(exp_id))
        studies.append(row["study_id"])
        contrasts.append(row["contrast_ids"])
        sizes.append(row["sample_size"])
        kept_ijk.append(grp.loc[keep, ["i", "j", "k"]].to_numpy())
        kept_xyz.append(grp.loc[keep, ["x_mni", "y_mni", "z_mni"]].to_numpy())
        starts.append(starts[-1] + int(keep.sum()))
    table = pd.DataFrame(rows)
    mark_defaulted(table, foci, defaulted)
    return Experiments(
        ids=ids,
        study_ids=studies,
        contrast_ids=contrasts,
        sample_size=np.array(sizes, dtype=np.float64),
        focus_start=np.array(starts, dtype=np.int64),
        ijk=(np.concatenate(kept_ijk) if kept_ijk else np.zeros((0, 3))).astype(np.int32),
        xyz_mni=np.concatenate(kept_xyz) if kept_xyz else np.zeros((0, 3)),
        table=table,
        foci=foci,
        warnings=warnings,
    )


def same_experiments(a: Experiments, b: Experiments) -> None:
    assert a.ids == b.ids and a.study_ids == b.study_ids and a.contrast_ids == b.contrast_ids
    for name in ("sample_size", "focus_start", "ijk", "xyz_mni"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.foci, b.foci)
    assert a.warnings == b.warnings
