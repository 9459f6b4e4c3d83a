"""TSV / CSV foci tables with column aliases and an optional JSON sidecar."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import pandas as pd

from csale_app.errors import InputError
from csale_app.io.read_common import (
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


def read_table(path: Path) -> pd.DataFrame:
    """Read a TSV (``.tsv``) or CSV (``.csv``) foci table into the foci table."""
    path = Path(path)
    suffix = path.suffix.lower()
    delimiter = "\t" if suffix == ".tsv" else ","
    fmt = "tsv" if suffix == ".tsv" else "csv"
    text = decode_text(path, read_bytes(path))
    defaults = read_sidecar(path)
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
