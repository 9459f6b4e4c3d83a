"""The reference database, read for Neurosynth/BrainMap sizes (~500,000 foci) in seconds.

Three steps, each vectorized (no Python loop over experiments or foci) and each giving the
same result as the general code it stands in for:

- :func:`read_database_file`: a plain TSV/CSV (no quotes, no blank lines, no CR) is read
  with pandas' C parser and checked column-wise (each distinct coordinate, space and
  sample-size token is parsed once by the readers' own functions); anything else, and any
  file with a problem, goes through :func:`.readers.read_studyset`, which then reports the
  problem with its line number as usual.
- :func:`deduplicate`: an experiment (study_id, contrast_id) listed in several files with
  the same foci (coordinates rounded to 0.001 mm, in any order) counts once: the first
  listing is kept. Repeated foci within one experiment are kept, as NiMARE keeps them.
- indexing: :func:`.experiments.build_experiments`, the one (vectorized) builder that
  studyset files and in-memory tables use too.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .experiments import Experiments, build_experiments
from .read_common import (
    COLUMNS,
    check_regular_file,
    coordinate,
    decode_text,
    read_bytes,
    sample_size_value,
    space_or_error,
)
from .read_tables import ALIASES, REQUIRED, normalize_column, canonical, read_sidecar
from .readers import read_studyset

KEY = ["study_id", "contrast_id"]


# ---- reading ------------------------------------------------------------------------------
def _token_map(tokens: np.ndarray, parse) -> np.ndarray | None:
    """``parse`` applied to each distinct token once (None if it raises InputError)."""
    codes, uniq = pd.factorize(tokens)
    try:
        values = [parse(u) for u in uniq]
    except InputError:
        return None
    return np.asarray(values, dtype=object)[codes]


def _pair_codes(a, b) -> np.ndarray:
    """Codes of (a, b) pairs in order of first appearance (as groupby(sort=False))."""
    ca, ua = pd.factorize(a)
    cb, _ = pd.factorize(b)
    return pd.factorize(ca.astype(np.int64) * (int(cb.max()) + 1 if len(cb) else 1) + cb)[0]


def _fast_table(path: Path) -> pd.DataFrame | None:
    """The foci table of a plain TSV/CSV exactly as :func:`.read_tables.read_table` builds
    it, or None when the file is not plain or has any problem (the careful reader then
    reads it and names the problem)."""
    suffix = path.suffix.lower()
    delimiter = "\t" if suffix == ".tsv" else ","
    text = decode_text(path, read_bytes(path))
    if '"' in text or "\r" in text or "\n\n" in text or not text.strip():
        return None
    if text.endswith("\n"):
        text = text[:-1]
    lines_header = text[: text.find("\n")] if "\n" in text else text
    header = lines_header.split(delimiter)
    if not any(h.strip() for h in header):
        return None
    columns: dict[str, int] = {}
    given: dict[str, str] = {}
    seen: set[str] = set()
    for idx, name in enumerate(header):
        key, canon = normalize_column(name), canonical(name)
        if canon is None:
            continue
        if key in seen:
            return None
        seen.add(key)
        rank = ALIASES[canon].index(key)
        if canon not in columns or rank < ALIASES[canon].index(normalize_column(given[canon])):
            columns[canon], given[canon] = idx, name.strip()
    defaults = read_sidecar(path)
    if any(c not in columns for c in REQUIRED) or (
        "space" not in columns and "space" not in defaults
    ):
        return None
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            skiprows=1,
            dtype=object,
            na_filter=False,
            keep_default_na=False,
            quoting=3,
            skip_blank_lines=False,
            engine="c",
            names=range(len(header)),
        )
    except (pd.errors.ParserError, ValueError):
        return None
    n = len(raw)
    if n == 0 or raw.isna().to_numpy().any():
        return None  # no foci rows, or a row with fewer fields than the header

    def stripped(column: int) -> np.ndarray:
        codes, uniq = pd.factorize(raw[column].to_numpy())
        return np.array([u.strip() for u in uniq], dtype=object)[codes]

    blank = np.ones(n, dtype=bool)
    for c in raw.columns:
        blank &= stripped(c) == ""
    if blank.any():
        return None  # a record of empty fields only (skipped by the careful reader)

    def cell(name: str) -> np.ndarray:
        idx = columns.get(name)
        return stripped(idx) if idx is not None else np.full(n, "", dtype=object)

    study = cell("study_id")
    if (study == "").any():
        return None
    contrast = cell("contrast_id")
    contrast[contrast == ""] = defaults.get("contrast_id") or "1"
    xyz = []
    for axis in "xyz":
        values = _token_map(cell(axis), lambda t, a=axis: coordinate(t, path, 0, a))
        if values is None:
            return None
        xyz.append(values.astype(np.float64))
    space_raw = cell("space")
    if (space_raw == "").any() and "space" not in defaults:
        return None
    space = _token_map(
        space_raw, lambda t: defaults["space"] if t == "" else space_or_error(t, path, 0)
    )
    size = _token_map(cell("sample_size"), lambda t: sample_size_value(t, path, 0))
    if space is None or size is None:
        return None
    size = size.astype(np.float64)
    size = np.where(np.isnan(size), defaults.get("sample_size", math.nan), size)
    # one space and one sample size per experiment; the first given size fills the others
    exp = _pair_codes(study, contrast)
    if _pair_codes(exp, space).max() != exp.max():
        return None
    sizes = pd.Series(size).groupby(exp)
    if (sizes.nunique() > 1).any():
        return None
    size = sizes.transform("first").to_numpy(dtype=np.float64)
    frame = pd.DataFrame(
        {
            "study_id": str_series(study),
            "contrast_id": str_series(contrast),
            "x": xyz[0],
            "y": xyz[1],
            "z": xyz[2],
            "space": str_series(space),
            "sample_size": size,
            "source_file": str_series(np.full(1, str(path), object), n),
            "source_line": np.arange(2, n + 2, dtype=np.int64),
        },
        columns=COLUMNS,
    )
    frame.attrs["warnings"] = []
    frame.attrs["format"] = "tsv" if suffix == ".tsv" else "csv"
    return frame


def str_series(values: np.ndarray, n: int | None = None) -> pd.Series:
    """A ``dtype=str`` column (as :func:`.read_common.make_frame` makes) built from the
    distinct values (converting 500,000 Python strings one by one takes a second)."""
    if n is not None:
        return pd.Series(pd.array(list(values), dtype=str).take(np.zeros(n, np.int64)))
    codes, uniq = pd.factorize(values)
    return pd.Series(pd.array(list(uniq), dtype=str).take(codes))


def read_database_file(path) -> pd.DataFrame:
    """One reference-database file as :func:`.readers.read_studyset` reads it (fast for
    plain TSV/CSV tables; every other case is read by ``read_studyset`` itself)."""
    path = Path(path)
    if path.suffix.lower() in (".tsv", ".csv") and path.is_file():
        check_regular_file(path)
        frame = _fast_table(path)
        if frame is not None:
            return frame
    return read_studyset(path)


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
        codes = _pair_codes(frame["study_id"].to_numpy(), frame["contrast_id"].to_numpy())
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
    frames = [f if isinstance(f, pd.DataFrame) else read_database_file(f) for f in files]
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
