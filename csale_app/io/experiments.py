"""From the parsed foci table to experiments on the template grid.

Talairach foci go to MNI with Lancaster's tal2icbm (the "other" variant, as NiMARE's
``tal2mni``); contrasts of one study are merged into one experiment (foci pooled, sample
size = rounded mean), as in the C-SALE study; foci are put on the template grid by
rounding (NiMARE's ``mm2vox``) and foci outside the template's bounding box are dropped
and counted. Experiments with no foci left are dropped with a warning.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _where(row: pd.Series, name_size) -> tuple[str, int | None, str]:
    """How an error names a focus's sample size: file and line, or for an in-memory table
    ``name_size(1-based row position)`` (its row label and column, see
    :func:`.studyset.read_source`)."""
    if name_size is None:
        return row["source_file"], int(row["source_line"]), ""
    return row["source_file"], None, f"{name_size(int(row['source_line']))}: "


def check_sample_sizes(foci: pd.DataFrame, name_size=None) -> None:
    """Every focus needs a finite sample size >= 1 (without --kernel-fwhm); the first
    offending row is named (``name_size``: see :func:`_where`)."""
    size = foci["sample_size"]
    missing = size.isna() | ~(size > 0)
    if missing.any():
        row = foci[missing].iloc[0]
        path, line, where = _where(row, name_size)
        raise InputError(
            path,
            line,
            f"{where}experiment '{row['study_id']}' has no positive sample size "
            f"(got {row['sample_size']}); give one, or set --default-sample-size N "
            "or --kernel-fwhm MM",
        )
    # A sample size counts subjects: below 1 the kernel width (Eickhoff 2009) has no
    # meaning and overflows; non-integer sizes >= 1 are used as given (as NiMARE does),
    # merged experiments take the rounded mean (>= 1).
    tiny = ~(size >= 1) | ~np.isfinite(size)
    if tiny.any():
        row = foci[tiny].iloc[0]
        path, line, where = _where(row, name_size)
        raise InputError(
            path,
            line,
            f"{where}experiment '{row['study_id']}' has sample size {row['sample_size']:g}; "
            "a sample size counts subjects and must be a finite number >= 1",
        )


def _join_groups(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """ "|".join of each group's values (``group`` sorted ascending), as an object array;
    experiments with one value (nearly all) take it as is, without joining."""
    out = np.empty(n_groups, dtype=object)
    counts = np.bincount(group, minlength=n_groups)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    values = np.asarray([str(v) for v in values], dtype=object) if len(values) else values
    single = counts == 1
    out[single] = values[starts[single]]
    for g in np.flatnonzero(counts > 1):  # merged contrasts only: a few thousand at most
        out[g] = "|".join(values[starts[g] : starts[g] + counts[g]])
    return out


def build_experiments(
    foci: pd.DataFrame,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    merge_contrasts: bool = True,
    kernel_fwhm: float | None = None,
    default_sample_size: float | None = None,
    name_size: Callable[[int], str] | None = None,
) -> Experiments:
    """Validate sample sizes, convert to MNI, merge contrasts and place foci on the grid.

    One builder for studyset files, in-memory tables and the reference database: group
    operations, no Python loop over experiments or foci (Neurosynth's ~500,000 foci in
    about a second). Experiments come sorted by id, foci in input order within each.
    ``name_size``: how an in-memory table's errors name a row's sample size (its row label
    and column) instead of file:line."""
    foci = foci.copy()
    warnings: list[str] = []
    defaulted = fill_default_sample_size(foci, default_sample_size, kernel_fwhm)
    if kernel_fwhm is None:
        check_sample_sizes(foci, name_size)
    inside = place_foci(foci, affine, shape, merge_contrasts, warnings)
    exp_codes, exp_ids = pd.factorize(foci["experiment_id"], sort=True)
    n_exp = len(exp_ids)
    order = np.argsort(exp_codes, kind="stable")
    counts = np.bincount(exp_codes, minlength=n_exp)
    first_row = order[np.r_[0, np.cumsum(counts)[:-1]]] if n_exp else np.zeros(0, np.int64)
    # contrasts of each experiment in order of first appearance, each with its first
    # non-missing sample size; an experiment's size is their mean (rounded when merged)
    pairs = pd.DataFrame(
        {
            "e": exp_codes,
            "c": foci["contrast_id"].to_numpy(),
            "n": foci["sample_size"].to_numpy(dtype=np.float64),
        }
    )
    per_contrast = pairs.groupby(["e", "c"], sort=False)["n"].first().reset_index()
    per_contrast = per_contrast.iloc[np.argsort(per_contrast["e"].to_numpy(), kind="stable")]
    pc_e = per_contrast["e"].to_numpy()
    valid = ~np.isnan(per_contrast["n"].to_numpy())
    sums = np.zeros(n_exp)
    np.add.at(sums, pc_e[valid], per_contrast["n"].to_numpy()[valid])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / np.bincount(pc_e[valid], minlength=n_exp)
    size = np.round(mean) if merge_contrasts else mean
    contrast_ids = _join_groups(pc_e, per_contrast["c"].to_numpy(), n_exp)
    sp = pd.DataFrame({"e": exp_codes, "s": foci["space"].to_numpy()}).drop_duplicates()
    sp = sp.sort_values(["e", "s"], kind="stable")
    spaces = _join_groups(sp["e"].to_numpy(), sp["s"].to_numpy(), n_exp)
    n_kept = np.bincount(exp_codes, weights=inside, minlength=n_exp).astype(np.int64)
    has = n_kept > 0
    table = (
        pd.DataFrame(
            {
                "experiment_id": list(exp_ids),
                "study_id": foci["study_id"].to_numpy()[first_row].astype(str).astype(object),
                "contrast_ids": contrast_ids,
                "sample_size": size if kernel_fwhm is None else np.full(n_exp, np.nan),
                "n_foci": n_kept,
                "n_foci_dropped": counts - n_kept,
                "space": spaces,
                "source_file": foci["source_file"].to_numpy()[first_row].astype(str).astype(object),
                "status": np.where(has, "kept", "dropped: no foci inside the template").astype(
                    object
                ),
            }
        )
        if n_exp
        else pd.DataFrame()
    )
    mark_defaulted(table, foci, defaulted)
    warnings.extend(
        f"experiment '{e}' dropped: none of its foci lie in the template"
        for e in np.asarray(exp_ids)[~has]
    )
    rows = order[inside[order]]
    kept_sizes = table["sample_size"].to_numpy()[has] if n_exp else np.zeros(0)
    return Experiments(
        ids=[str(e) for e in np.asarray(exp_ids)[has]],
        study_ids=list(table["study_id"].to_numpy()[has]) if n_exp else [],
        contrast_ids=list(table["contrast_ids"].to_numpy()[has]) if n_exp else [],
        sample_size=np.asarray(kept_sizes, dtype=np.float64),
        focus_start=np.r_[0, np.cumsum(n_kept[has])].astype(np.int64),
        ijk=foci[["i", "j", "k"]].to_numpy()[rows].astype(np.int32),
        xyz_mni=foci[["x_mni", "y_mni", "z_mni"]].to_numpy(dtype=np.float64)[rows],
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
