"""TSV / CSV foci tables with column aliases and an optional JSON sidecar."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from csale_app.errors import InputError
from csale_app.io.read_common import (
    COLUMNS,
    add_focus,
    coordinate,
    decode_text,
    make_frame,
    new_records,
    read_bytes,
    sample_size_value,
    short,
    space_or_error,
)
from csale_app.io.read_json import load_json

#: Accepted column names (after lower-casing and mapping spaces/hyphens to "_"), in order
#: of preference: the first present one is used.
ALIASES: dict[str, tuple[str, ...]] = {
    "study_id": ("study_id", "studyid", "study", "paper", "pmid", "paper_id", "id"),
    "contrast_id": (
        "contrast_id",
        "contrastid",
        "contrast",
        "contrast_name",
        "experiment",
        "experiment_id",
        "analysis",
        "analysis_id",
        "analysis_name",
    ),
    "x": ("x", "x_mm", "xmm", "x_coord", "coord_x"),
    "y": ("y", "y_mm", "ymm", "y_coord", "coord_y"),
    "z": ("z", "z_mm", "zmm", "z_coord", "coord_z"),
    "space": ("space", "coordinate_space", "coord_space", "reference", "reference_space"),
    "sample_size": (
        "sample_size",
        "samplesize",
        "sample_sizes",
        "n",
        "n_subjects",
        "nsubjects",
        "subjects",
        "num_subjects",
    ),
}
REQUIRED = ("study_id", "x", "y", "z")
SIDECAR_KEYS = ("space", "sample_size", "contrast_id")


def normalize_column(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.replace("\ufeff", "").strip().lower())


def canonical(name: str) -> str | None:
    key = normalize_column(name)
    for canon, names in ALIASES.items():
        if key in names:
            return canon
    return None


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def read_sidecar(path: Path) -> dict:
    """Defaults from ``<stem>.json`` beside the table ({} if there is none)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    data = load_json(side, decode_text(side, read_bytes(side)))
    if not isinstance(data, dict):
        raise InputError(side, 1, 'sidecar must be a JSON object like {"space": "MNI"}')
    defaults, lines = {}, {}
    for key, value in data.items():
        canon = canonical(str(key))
        if canon in SIDECAR_KEYS and not isinstance(value, (dict, list)):
            defaults[canon] = value
            lines[canon] = data.key_lines.get(key, 1)
    if "space" in defaults:
        defaults["space"] = space_or_error(
            defaults["space"], side, lines["space"], "sidecar 'space': "
        )
    if "sample_size" in defaults:
        defaults["sample_size"] = sample_size_value(
            defaults["sample_size"], side, lines["sample_size"], "sidecar 'sample_size': "
        )
    if "contrast_id" in defaults:
        defaults["contrast_id"] = str(defaults["contrast_id"]).strip()
    return defaults


def _rows(path: Path, text: str, delimiter: str):
    """(line number where the record starts, fields) for each non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputError(
                path, start, f"cannot parse the row starting here: {err} (check its quotes)"
            ) from None
        if any(field.strip() for field in row):
            yield start, row
        start = reader.line_num + 1


def read_table(path: Path, *, fast: bool = True) -> pd.DataFrame:
    """Read a TSV (``.tsv``) or CSV (``.csv``) foci table into the foci table: a plain
    table column-wise (:func:`plain_table`), anything else, and any table with a
    problem, row by row (``fast=False``: always row by row; tests compare the two)."""
    path = Path(path)
    suffix = path.suffix.lower()
    delimiter = "\t" if suffix == ".tsv" else ","
    fmt = "tsv" if suffix == ".tsv" else "csv"
    text = decode_text(path, read_bytes(path))
    defaults = read_sidecar(path)
    if fast:
        frame = plain_table(path, text, delimiter, fmt, defaults)
        if frame is not None:
            return frame
    rows = _rows(path, text, delimiter)
    first = next(rows, None)
    if first is None:
        raise InputError(path, 1, "file is empty; expected a header row and foci rows")
    header_line, header = first
    columns: dict[str, int] = {}
    given: dict[str, str] = {}
    seen: dict[str, str] = {}
    for idx, name in enumerate(header):
        key = normalize_column(name)
        canon = canonical(name)
        if canon is None:
            continue
        if key in seen:
            raise InputError(
                path,
                header_line,
                f"columns {seen[key]!r} and {name.strip()!r} both give {canon}; keep one",
            )
        seen[key] = name.strip()
        rank = ALIASES[canon].index(key)
        if canon not in columns or rank < ALIASES[canon].index(normalize_column(given[canon])):
            columns[canon] = idx
            given[canon] = name.strip()
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        hint = ""
        other = ";" if delimiter == "," else ","
        if len(header) == 1 and (other in header[0] or "\t" in header[0] or "," in header[0]):
            hint = f" (is it delimited by something else? {suffix} files use " + (
                "tabs)" if delimiter == "\t" else "commas)"
            )
        raise InputError(
            path,
            header_line,
            f"missing required column(s) {', '.join(missing)}; the header needs study_id, "
            f"x, y, z (optional contrast_id, space, sample_size){hint}",
        )
    if "space" not in columns and "space" not in defaults:
        raise InputError(
            path,
            header_line,
            "no coordinate space: add a 'space' column (MNI or TAL) or a sidecar "
            f'{sidecar_path(path).name} with {{"space": "MNI"}}',
        )

    records = new_records()
    experiments: dict[tuple[str, str], dict] = {}
    n_fields = len(header)
    for line, row in rows:
        if len(row) > n_fields and any(f.strip() for f in row[n_fields:]):
            raise InputError(path, line, f"row has {len(row)} fields but the header has {n_fields}")

        def cell(name: str, row=row) -> str:
            idx = columns.get(name)
            return row[idx].strip() if idx is not None and idx < len(row) else ""

        study_id = cell("study_id")
        if not study_id:
            raise InputError(path, line, f"empty {given['study_id']!r} (study_id) value")
        contrast_id = cell("contrast_id") or defaults.get("contrast_id") or "1"
        xyz = tuple(coordinate(cell(a), path, line, a) for a in "xyz")
        raw_space = cell("space")
        if raw_space:
            space = space_or_error(raw_space, path, line)
        elif "space" in defaults:
            space = defaults["space"]
        else:
            raise InputError(
                path,
                line,
                "empty space value; fill it (MNI or TAL) or give a default in "
                f"{sidecar_path(path).name}",
            )
        size = sample_size_value(cell("sample_size"), path, line)
        if math.isnan(size):
            size = defaults.get("sample_size", math.nan)
        key = (study_id, contrast_id)
        exp = experiments.setdefault(
            key, {"space": space, "space_line": line, "size": size, "size_line": line, "rows": []}
        )
        if exp["space"] != space:
            raise InputError(
                path,
                line,
                f"experiment {short(study_id)}/{short(contrast_id)} mixes spaces: {space} here, "
                f"{exp['space']} on line {exp['space_line']}; use one space per experiment",
            )
        if not math.isnan(size):
            if math.isnan(exp["size"]):
                exp["size"], exp["size_line"] = size, line
            elif exp["size"] != size:
                raise InputError(
                    path,
                    line,
                    f"experiment {short(study_id)}/{short(contrast_id)} has sample size "
                    f"{size:g} here but {exp['size']:g} on line {exp['size_line']}",
                )
        exp["rows"].append(len(records["x"]))
        add_focus(records, study_id, contrast_id, xyz, space, size, line)
    if not records["x"]:
        raise InputError(path, header_line, "table has a header but no foci rows")
    for exp in experiments.values():
        for i in exp["rows"]:
            records["sample_size"][i] = exp["size"]
    return make_frame(records, path, fmt, [])


# ---- plain tables, column-wise ----------------------------------------------------------
def _token_map(tokens: np.ndarray, parse) -> np.ndarray | None:
    """``parse`` applied to each distinct token once (None if it raises InputError)."""
    codes, uniq = pd.factorize(tokens)
    try:
        values = [parse(u) for u in uniq]
    except InputError:
        return None
    return np.asarray(values, dtype=object)[codes]


def pair_codes(a, b) -> np.ndarray:
    """Codes of (a, b) pairs in order of first appearance (as groupby(sort=False))."""
    ca, ua = pd.factorize(a)
    cb, _ = pd.factorize(b)
    return pd.factorize(ca.astype(np.int64) * (int(cb.max()) + 1 if len(cb) else 1) + cb)[0]


def str_series(values: np.ndarray, n: int | None = None) -> pd.Series:
    """A ``dtype=str`` column (as :func:`.read_common.make_frame` makes) built from the
    distinct values (converting 500,000 Python strings one by one takes a second)."""
    if n is not None:
        return pd.Series(pd.array(list(values), dtype=str).take(np.zeros(n, np.int64)))
    codes, uniq = pd.factorize(values)
    return pd.Series(pd.array(list(uniq), dtype=str).take(codes))


def plain_table(
    path: Path, text: str, delimiter: str, fmt: str, defaults: dict
) -> pd.DataFrame | None:
    """The foci table of a plain TSV/CSV (no quotes, no blank lines, no CR) exactly as the
    row-by-row reader builds it, read column-wise with pandas' C parser (each distinct
    coordinate, space and sample-size token parsed once by the readers' own functions):
    500,000 foci in about a second. None when the file is not plain or has any problem:
    the row-by-row reader then reads it and names the problem with its line."""
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
    exp = pair_codes(study, contrast)
    if pair_codes(exp, space).max() != exp.max():
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
    frame.attrs["format"] = fmt
    return frame
