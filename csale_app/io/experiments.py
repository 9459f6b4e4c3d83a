"""From the parsed foci table to experiments on the template grid.

Talairach foci go to MNI with Lancaster's tal2icbm (the "other" variant, as NiMARE's
``tal2mni``); contrasts of one study are merged into one experiment (foci pooled, sample
size = rounded mean), as in the C-SALE study; foci are put on the template grid by
rounding (NiMARE's ``mm2vox``) and foci outside the template's bounding box are dropped
and counted. Experiments with no foci left are dropped with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError

# Lancaster et al. (2007) tal2icbm_other, as in nimare.utils.tal2mni.
_ICBM_OTHER = np.array(
    [
        [0.9357, 0.0029, -0.0072, -1.0423],
        [-0.0065, 0.9396, -0.0726, -1.3940],
        [0.0103, 0.0752, 0.8967, 3.6475],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
_TAL2MNI = np.linalg.inv(_ICBM_OTHER)


def tal_to_mni(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz, dtype=np.float64)
    homo = np.c_[xyz, np.ones(len(xyz))]
    return (homo @ _TAL2MNI.T)[:, :3]


def mm_to_ijk(xyz: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Nearest voxel of each mm coordinate (nimare.utils.mm2vox)."""
    inv = np.linalg.inv(affine)
    ijk = xyz @ inv[:3, :3].T + inv[:3, 3]
    return np.round(ijk).astype(np.int64)


@dataclass
class Experiments:
    """Experiments of one studyset, as arrays (what ``stats`` and ``kernels`` consume)."""

    ids: list[str]
    study_ids: list[str]
    contrast_ids: list[str]
    sample_size: np.ndarray  # float64 (n_exp,), NaN when a fixed FWHM is used
    focus_start: np.ndarray  # int64 (n_exp + 1,)
    ijk: np.ndarray  # int32 (n_foci, 3), template grid
    xyz_mni: np.ndarray  # float64 (n_foci, 3)
    table: pd.DataFrame  # one row per experiment (written as _experiments_table.tsv)
    foci: pd.DataFrame  # parsed foci in MNI with original IDs (_desc-input_foci.tsv)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_experiments(self) -> int:
        return len(self.ids)

    @property
    def n_foci(self) -> int:
        return int(self.focus_start[-1])

    def foci_counts(self) -> np.ndarray:
        return np.diff(self.focus_start)

    def subset(self, keep: np.ndarray) -> "Experiments":
        """Experiments whose index is in ``keep`` (bool mask or indices), foci kept in order."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        counts = self.foci_counts()[idx]
        rows = (
            np.concatenate([np.arange(self.focus_start[i], self.focus_start[i + 1]) for i in idx])
            if len(idx)
            else np.zeros(0, dtype=np.int64)
        )
        ids = [self.ids[i] for i in idx]
        return Experiments(
            ids=ids,
            study_ids=[self.study_ids[i] for i in idx],
            contrast_ids=[self.contrast_ids[i] for i in idx],
            sample_size=self.sample_size[idx],
            focus_start=np.r_[0, np.cumsum(counts)].astype(np.int64),
            ijk=self.ijk[rows],
            xyz_mni=self.xyz_mni[rows],
            table=self.table[self.table["experiment_id"].isin(ids)].reset_index(drop=True),
            foci=self.foci[self.foci["experiment_id"].isin(ids)].reset_index(drop=True),
            warnings=list(self.warnings),
        )


def place_foci(
    foci: pd.DataFrame,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    merge_contrasts: bool,
    warnings: list[str],
) -> np.ndarray:
    """Add MNI coordinates (tal2icbm where Talairach), grid indices, ``in_template`` and
    ``experiment_id`` to ``foci`` (in place); warn about foci outside the template.
    Returns ``in_template``."""
    tal = (foci["space"] == "TAL").to_numpy()
    xyz = foci[["x", "y", "z"]].to_numpy(dtype=np.float64)
    xyz_mni = xyz.copy()
    if tal.any():
        xyz_mni[tal] = tal_to_mni(xyz[tal])
    foci["x_mni"], foci["y_mni"], foci["z_mni"] = xyz_mni.T
    foci["converted_from"] = np.where(tal, "TAL (tal2icbm, Lancaster 2007)", "")
    ijk = mm_to_ijk(xyz_mni, affine)
    inside = np.all((ijk >= 0) & (ijk < np.array(shape)), axis=1)
    foci["i"], foci["j"], foci["k"] = ijk.T
    foci["in_template"] = inside
    foci["experiment_id"] = (
        foci["study_id"].astype(str)
        if merge_contrasts
        else foci["study_id"].astype(str) + "-" + foci["contrast_id"].astype(str)
    )
    if not inside.all():
        n_out = int((~inside).sum())
        first = foci[~inside].iloc[0]
        if foci.attrs.get("refuse_outside"):  # database files: nothing is dropped unseen
            raise InputError(
                first["source_file"],
                int(first["source_line"]),
                f"focus ({first['x']:g}, {first['y']:g}, {first['z']:g}) of "
                f"study {first['study_id']} lies outside the template's "
                f"bounding box ({n_out} foci do); fix or remove these rows",
            )
        warnings.append(
            f"{n_out} foci outside the template's bounding box were dropped "
            f"(first: {first['source_file']}:{first['source_line']})"
        )
    return inside


#: ``sample_size_source`` of an experiment given --default-sample-size (column present
#: only when the option is set).
DEFAULTED = "--default-sample-size"


def fill_default_sample_size(
    foci: pd.DataFrame, default: float | None, kernel_fwhm: float | None
) -> np.ndarray | None:
    """Give foci without a sample size ``default`` (in place); returns which foci got it
    (None when the option is not set). Database files that carry no sample size at all
    (Neurosynth, NeuroQuery) are refused here without the option or ``--kernel-fwhm``,
    naming the file and the options."""
    if kernel_fwhm is not None:
        return None
    missing = foci["sample_size"].isna().to_numpy()
    if default is None:
        if foci.attrs.get("no_sample_sizes") and missing.all() and len(foci):
            raise InputError(
                foci.attrs["no_sample_sizes"],
                None,
                "these database files carry no sample sizes; give "
                "--default-sample-size N (the C-SALE study used 20 for "
                "Neurosynth) or a fixed kernel with --kernel-fwhm MM",
            )
        return None
    foci.loc[missing, "sample_size"] = float(default)
    return missing


def mark_defaulted(table: pd.DataFrame, foci: pd.DataFrame, defaulted: np.ndarray | None) -> None:
    """Add ``sample_size_source`` to the experiments table when --default-sample-size is
    set: the option's name for experiments that had no sample size, else "input"."""
    if defaulted is None or not len(table):
        return
    if defaulted.all() or not defaulted.any():  # a database file set: all of them
        used = np.full(len(table), bool(defaulted.any()))
    else:
        given = foci.loc[defaulted, "experiment_id"].drop_duplicates()
        used = table["experiment_id"].isin(given).to_numpy()
    table["sample_size_source"] = np.where(used, DEFAULTED, "input").astype(object)


def build_experiments(
    foci: pd.DataFrame,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    merge_contrasts: bool = True,
    kernel_fwhm: float | None = None,
    default_sample_size: float | None = None,
) -> Experiments:
    """Validate sample sizes, convert to MNI, merge contrasts and place foci on the grid."""
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


def restrict_to_mask(exps: Experiments, mask: np.ndarray) -> Experiments:
    """Keep only foci inside ``mask`` (template grid); experiments left without foci go."""
    inside = mask[tuple(exps.ijk.T)] if exps.n_foci else np.zeros(0, bool)
    counts = foci_per_experiment(exps, inside)
    keep_exp = counts > 0
    table = exps.table.copy()
    n_in = dict(zip(exps.ids, counts))
    table["n_foci_in_analysis_mask"] = [int(n_in.get(e, 0)) for e in table["experiment_id"]]
    # the table's "kept" rows are the experiments analysed (the summary's count)
    outside = table["status"].eq("kept") & table["n_foci_in_analysis_mask"].eq(0)
    table.loc[outside, "status"] = "not analysed: no focus in the analysis mask"
    ids = [e for e, k in zip(exps.ids, keep_exp) if k]
    idx = np.flatnonzero(keep_exp)
    return Experiments(
        ids=ids,
        study_ids=[exps.study_ids[i] for i in idx],
        contrast_ids=[exps.contrast_ids[i] for i in idx],
        sample_size=exps.sample_size[idx],
        focus_start=np.r_[0, np.cumsum(counts[idx])].astype(np.int64),
        ijk=exps.ijk[inside],
        xyz_mni=exps.xyz_mni[inside],
        table=table,
        foci=exps.foci,
        warnings=list(exps.warnings),
    )


def foci_per_experiment(exps: Experiments, per_focus: np.ndarray) -> np.ndarray:
    """Per experiment, how many of its foci have ``per_focus`` true (int64)."""
    if not exps.n_foci:
        return np.zeros(exps.n_experiments, dtype=np.int64)
    sums = np.add.reduceat(per_focus.astype(np.int64), exps.focus_start[:-1])
    return np.where(exps.foci_counts() > 0, sums, 0)


def rest_of_database(db: Experiments, studyset: Experiments) -> tuple[np.ndarray, int]:
    """Database experiments that are not in ``studyset`` (bool per database experiment) and
    how many were removed: an experiment is in the studyset when it shares the study id and
    a contrast id with one of its experiments (merged experiments list their contrasts)."""
    pairs = {
        (st, c)
        for st, cs in zip(studyset.study_ids, studyset.contrast_ids)
        for c in str(cs).split("|")
    }
    studies = {st for st, _ in pairs}
    overlap = np.array(
        [
            st in studies and any((st, c) in pairs for c in str(cs).split("|"))
            for st, cs in zip(db.study_ids, db.contrast_ids)
        ],
        dtype=bool,
    )
    return ~overlap, int(overlap.sum())
