"""Input readers: every studyset format becomes one foci table.

The table has exactly the columns :data:`COLUMNS`:

``study_id`` (str), ``contrast_id`` (str), ``x``/``y``/``z`` (float64, as in the file, not
converted), ``space`` ("MNI" or "TAL"), ``sample_size`` (float64, NaN when missing),
``source_file`` (str, the path as given), ``source_line`` (int, 1-based line/row of the
focus), with ``df.attrs["warnings"]`` (list of one-line strings) and ``df.attrs["format"]``
(one of :data:`FORMATS`).

Malformed input raises :class:`csale_app.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from csale_app.errors import InputError, MissingInputError
from csale_app.io.read_common import COLUMNS, normalize_space
from csale_app.io.read_json import read_json_studyset
from csale_app.io.read_parquet import is_parquet_studyset, read_parquet_studyset
from csale_app.io.read_sleuth import read_sleuth
from csale_app.io.read_tables import read_table

__all__ = [
    "COLUMNS",
    "FORMATS",
    "STUDYSET_SUFFIXES",
    "find_studysets",
    "is_parquet_studyset",
    "is_sidecar",
    "normalize_space",
    "read_json_studyset",
    "read_parquet_studyset",
    "read_sleuth",
    "read_studyset",
    "read_table",
    "study_label",
]

FORMATS = ("sleuth", "tsv", "csv", "nimare-json", "nimads-json", "nimare-parquet")
STUDYSET_SUFFIXES = (".txt", ".tsv", ".csv", ".json")
#: Files a JSON sidecar can describe (a sidecar is never read as a studyset).
_SIDECAR_OF = (".tsv", ".csv", ".nii", ".nii.gz", ".tsv.gz")
_NOT_STUDYSETS = {"dataset_description.json", "readme.txt", "changes.txt", "license.txt"}
DATABASE_DIR = "database"


def read_studyset(
    path, *, where: dict | None = None, unknown_space: str = "drop"
) -> pd.DataFrame:
    """Read one studyset (file or parquet folder) into the foci table.

    ``where`` and ``unknown_space`` apply to parquet studyset folders only (see
    :func:`read_parquet_studyset`).
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not is_parquet_studyset(path):
            raise InputError(
                path,
                None,
                "folder is not a parquet studyset (needs studyset.json with format "
                "'nimare-studyset-parquet')",
            )
        return read_parquet_studyset(path, where, unknown_space=unknown_space)
    if where is not None:
        raise ValueError("where= selects analyses of parquet studyset folders only")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return read_sleuth(path)
    if suffix in (".tsv", ".csv"):
        return read_table(path)
    if suffix == ".json":
        if is_sidecar(path):
            raise InputError(
                path, None, "this JSON is the sidecar of a table beside it, not a studyset"
            )
        return read_json_studyset(path)
    raise InputError(
        path,
        None,
        f"unsupported file type {path.suffix!r} (use .txt Sleuth, .tsv, .csv or .json)",
    )


def is_sidecar(path) -> bool:
    """True for ``foo.json`` lying beside ``foo.tsv`` / ``foo.csv`` (or ``foo.nii.gz``)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return False
    base = path.name[: -len(".json")]
    return any(
        (path.parent / (base + ext)).is_file()
        or (path.parent / (base + ext.upper())).is_file()
        for ext in _SIDECAR_OF
    )


def study_label(path) -> str:
    """The file stem (folder name) made BIDS-safe: ASCII letters and digits only."""
    path = Path(path)
    stem = path.name if path.is_dir() else path.stem
    label = re.sub(r"[^A-Za-z0-9]", "", stem)
    if not label:
        raise InputError(
            path,
            None,
            "the file name has no letters or digits to make a studyset label; rename the file",
        )
    return label


def find_studysets(input_dir) -> list[Path]:
    """Studyset files (.txt/.tsv/.csv/.json) and parquet folders directly in input_dir.

    Skips hidden entries, JSON sidecars, dataset_description.json, README/CHANGES/LICENSE
    and the ``database/`` folder. Two studysets whose labels differ only in case or
    punctuation are an InputError naming both files.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise MissingInputError(f"{input_dir}: input folder does not exist")
    found = []
    for entry in sorted(input_dir.iterdir()):
        name = entry.name
        if name.startswith(".") or name.lower() in _NOT_STUDYSETS:
            continue
        if entry.is_dir():
            if name != DATABASE_DIR and is_parquet_studyset(entry):
                found.append(entry)
        elif entry.suffix.lower() in STUDYSET_SUFFIXES and not is_sidecar(entry):
            found.append(entry)
    labels: dict[str, Path] = {}
    for entry in found:
        label = study_label(entry)
        key = label.lower()  # output folders must not collide on case-insensitive disks
        if key in labels:
            raise InputError(
                entry,
                None,
                f"studyset label {label!r} is the same as for {labels[key].name} (labels are "
                "the file names without non-alphanumerics, case-insensitive); rename one of "
                "the two files",
            )
        labels[key] = entry
    return found
