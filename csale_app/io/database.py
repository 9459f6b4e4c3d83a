"""The reference database, read for Neurosynth/BrainMap sizes (~500,000 foci) in seconds.

Three steps, each vectorized (no Python loop over experiments or foci) and each giving the
same result as the general code it stands in for:

- reading: :func:`.readers.read_studyset`, as for studysets (plain TSV/CSV tables are read
  column-wise with pandas' C parser, see :func:`.read_tables.read_table`).
- :func:`deduplicate`: an experiment (study_id, contrast_id) listed in several files with
  the same foci (coordinates rounded to 0.001 mm, in any order) counts once: the first
  listing is kept. Repeated foci within one experiment are kept, as NiMARE keeps them.
- indexing: :func:`.experiments.build_experiments`, the one (vectorized) builder that
  studyset files and in-memory tables use too.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from .experiments import Experiments, build_experiments
from .read_tables import pair_codes
from .readers import read_studyset

KEY = ["study_id", "contrast_id"]


# ---- de-duplication -----------------------------------------------------------------------
def _experiment_signatures(frame: pd.DataFrame, codes: np.ndarray, n_groups: int):
    """Per experiment (``codes`` 0..n_groups-1): foci count and two 64-bit multiset hashes
    of its coordinates rounded to 0.001 mm (sums of per-focus hashes modulo 2**64, so the
    order of foci within an experiment does not matter), and the rounded coordinates."""
    xyz = frame[["x", "y", "z"]].to_numpy(dtype=np.float64).round(3) + 0.0  # -0.0 -> 0.0
    bits = np.ascontiguousarray(xyz).view(np.uint64)
    with np.errstate(over="ignore"):
        h = [
            pd.util.hash_array(bits[:, a], hash_key=k)
            for a in range(3)
            for k in ("0123456789123456", "csale-app-dedup1")
        ]
        h1 = h[0] + h[2] * np.uint64(3) + h[4] * np.uint64(7)
        h2 = h[1] ^ (h[3] * np.uint64(5)) ^ (h[5] * np.uint64(11))
        h2 = pd.util.hash_array(h2)
    counts = np.bincount(codes, minlength=n_groups)
    sig1 = np.zeros(n_groups, np.uint64)
    sig2 = np.zeros(n_groups, np.uint64)
    np.add.at(sig1, codes, h1)  # wraps around modulo 2**64
    np.add.at(sig2, codes, h2)
    return counts, sig1, sig2, xyz


def _sorted_rows(xyz: np.ndarray) -> np.ndarray:
    return xyz[np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0]))]


def deduplicate(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the files' foci tables, each experiment once: an experiment listed again
    in a later file (same study_id, contrast_id and foci, rounded to 0.001 mm, in any order)
    is dropped. Rows come grouped by experiment, experiments in order of first appearance
    per file, foci in file order (as the former per-experiment loop ordered them)."""
    parts, file_of, local = [], [], []
    for i, frame in enumerate(frames):
        ok = frame[KEY].notna().all(axis=1).to_numpy()  # groupby drops a missing key
        frame = frame[ok] if not ok.all() else frame
        codes = pair_codes(frame["study_id"].to_numpy(), frame["contrast_id"].to_numpy())
        ok = np.ones(len(frame), dtype=bool)
        parts.append(frame[ok])
        local.append(codes[ok])
        file_of.append(np.full(int(ok.sum()), i, dtype=np.int64))
    sizes = [len(p) for p in parts]
    if not sum(sizes):
        return pd.concat(frames, ignore_index=True).iloc[0:0]
    # global experiment index: (file, first appearance within the file)
    n_local = [int(c.max()) + 1 if len(c) else 0 for c in local]
    offset = np.r_[0, np.cumsum(n_local)[:-1]]
    codes = np.concatenate([c + o for c, o in zip(local, offset)])
    n_groups = int(sum(n_local))
    allrows = pd.concat(parts, ignore_index=True)
    counts, sig1, sig2, xyz = _experiment_signatures(allrows, codes, n_groups)
    order = np.argsort(codes, kind="stable")  # rows by experiment, file order within
    first = np.r_[0, np.cumsum(counts)[:-1]]
    head = allrows.iloc[order[first]][KEY].reset_index(drop=True)
    sig = pd.DataFrame(
        {
            "study_id": head["study_id"],
            "contrast_id": head["contrast_id"],
            "n": counts,
            "h1": sig1,
            "h2": sig2,
        }
    )
    dup = sig.duplicated(keep="first").to_numpy()
    if dup.any():  # confirm with the coordinates themselves (never trust a hash alone)
        ref = sig.groupby(list(sig.columns), sort=False).ngroup().to_numpy()
        first_of = np.full(ref.max() + 1, -1, dtype=np.int64)
        first_of[ref[::-1]] = np.arange(len(ref))[::-1]
        for g in np.flatnonzero(dup):  # repeated experiments only
            f = first_of[ref[g]]
            a = _sorted_rows(xyz[order[first[g] : first[g] + counts[g]]])
            b = _sorted_rows(xyz[order[first[f] : first[f] + counts[f]]])
            if not np.array_equal(a, b):
                dup[g] = False
    keep_rows = order[~dup[codes[order]]]
    kept = allrows.iloc[keep_rows]
    # per-file concatenation (as before: a file whose experiments were all repeats adds
    # nothing, so it cannot change column dtypes)
    file_kept = np.concatenate(file_of)[keep_rows]
    pieces = [kept[file_kept == i] for i in range(len(frames)) if (file_kept == i).any()]
    return pd.concat(pieces, ignore_index=True)


def load_database(
    files,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    *,
    merge_contrasts: bool = True,
    kernel_fwhm: float | None = None,
    default_sample_size: float | None = None,
) -> Experiments:
    """Read, de-duplicate and index the reference database files (in this order; an item
    that is already a foci table, an in-memory database, is used as it is). A
    Neurosynth/NeuroQuery file set alone is not de-duplicated: its ids are unique (checked)
    and one study is one experiment."""
    frames = [f if isinstance(f, pd.DataFrame) else read_studyset(f) for f in files]
    foci = (
        frames[0]
        if len(frames) == 1 and frames[0].attrs.get("refuse_outside")
        else deduplicate(frames)
    )
    return build_experiments(
        foci,
        affine,
        shape,
        merge_contrasts=merge_contrasts,
        kernel_fwhm=kernel_fwhm,
        default_sample_size=default_sample_size,
    )
