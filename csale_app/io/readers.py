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

import hashlib
import logging
import os
import re
import stat
from pathlib import Path

import pandas as pd

from csale_app.errors import InputError, InputNotFoundError
from csale_app.io.read_common import (
    COLUMNS,
    _unreadable,
    check_regular_file,
    normalize_space,
)
from csale_app.io.neurosynth import find_fileset, read_fileset
from csale_app.io.read_json import read_json_studyset
from csale_app.io.read_parquet import is_parquet_studyset, read_parquet_studyset
from csale_app.io.read_sleuth import read_sleuth
from csale_app.io.read_tables import read_table

__all__ = [
    "COLUMNS",
    "FORMATS",
    "STUDYSET_SUFFIXES",
    "database_sources",
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

FORMATS = (
    "sleuth",
    "tsv",
    "csv",
    "nimare-json",
    "nimads-json",
    "nimare-parquet",
    "neurosynth",
    "neuroquery",
)
STUDYSET_SUFFIXES = (".txt", ".tsv", ".csv", ".json")
#: Files a JSON sidecar can describe (a sidecar is never read as a studyset).
_SIDECAR_OF = (".tsv", ".csv", ".nii", ".nii.gz", ".tsv.gz")
_NOT_STUDYSETS = {"dataset_description.json", "readme.txt", "changes.txt", "license.txt"}
DATABASE_DIR = "database"
#: Longest studyset label; longer ones are cut and get a hash of the full name, so the
#: BIDS file names built from them stay far below the 255-byte file-name limit.
MAX_LABEL = 64
LOG = logging.getLogger(__name__)


def read_studyset(path, *, where: dict | None = None, unknown_space: str = "drop") -> pd.DataFrame:
    """Read one studyset (file or parquet folder) into the foci table.

    ``where`` and ``unknown_space`` apply to parquet studyset folders only (see
    :func:`read_parquet_studyset`).
    """
    path = Path(path)
    if not path.exists():
        if os.path.lexists(path):  # a broken link or a link loop
            try:
                os.stat(path)
            except OSError as err:
                raise _unreadable(path, err) from None
        raise InputNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        fileset = None if is_parquet_studyset(path) else find_fileset(path)
        if fileset is not None:
            if where is not None:
                raise ValueError("where= selects analyses of parquet studyset folders only")
            return read_fileset(fileset)
        if not is_parquet_studyset(path):
            raise InputError(
                path,
                None,
                "folder is not a parquet studyset (needs studyset.json with format "
                "'nimare-studyset-parquet') nor a Neurosynth/NeuroQuery file set "
                "(data-neurosynth_version-7_coordinates.tsv.gz, ..._metadata.tsv.gz)",
            )
        return read_parquet_studyset(path, where, unknown_space=unknown_space)
    if where is not None:
        raise ValueError("where= selects analyses of parquet studyset folders only")
    check_regular_file(path)
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
        (path.parent / (base + ext)).is_file() or (path.parent / (base + ext.upper())).is_file()
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
            "the file name has no ASCII letters or digits to make a studyset label; rename "
            "the file",
        )
    if len(label) > MAX_LABEL:
        # cut, plus a hash of the whole name: distinct long names keep distinct labels
        digest = hashlib.sha1(os.fsencode(stem)).hexdigest()[:8]
        label = label[: MAX_LABEL - 8] + digest
    return label


def _valid_name(entry: Path) -> bool:
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes (surrogate escapes)
        return False
    return True


def database_sources(path) -> list[Path]:
    """The studysets a reference database path stands for: a Neurosynth/NeuroQuery file-set
    folder is one source, another folder every studyset in it, a file itself."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return [path] if find_fileset(path) is not None else find_studysets(path)


def find_studysets(input_dir) -> list[Path]:
    """Studyset files (.txt/.tsv/.csv/.json), parquet folders and Neurosynth/NeuroQuery
    file-set folders directly in input_dir.

    Skips hidden entries, JSON sidecars, dataset_description.json, README/CHANGES/LICENSE
    and the ``database/`` folder. Two studysets whose labels differ only in case or
    punctuation are an InputError naming both files.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputNotFoundError(f"{input_dir}: input folder does not exist")
    found = []
    try:
        entries = sorted(input_dir.iterdir())
    except OSError as err:
        raise _unreadable(input_dir, err) from None
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.lower() in _NOT_STUDYSETS:
            continue
        candidate = entry.suffix.lower() in STUDYSET_SUFFIXES
        try:
            mode = entry.stat().st_mode  # links followed; never opens the entry
        except OSError as err:
            if candidate:  # a broken link or a link loop named like a table
                raise _unreadable(entry, err) from None
            continue
        if stat.S_ISDIR(mode):
            if name != DATABASE_DIR and (
                is_parquet_studyset(entry) or find_fileset(entry) is not None
            ):
                if not _valid_name(entry):
                    raise InputError(
                        entry, None, "the folder name is not valid UTF-8; rename the folder"
                    )
                found.append(entry)
        elif candidate:
            if not _valid_name(entry):
                raise InputError(entry, None, "the file name is not valid UTF-8; rename the file")
            # a FIFO, socket or device (also behind a link), or a file over the size
            # cap: refused here, before any file is read
            check_regular_file(entry)
            if not is_sidecar(entry):
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
        if (
            len(re.sub(r"[^A-Za-z0-9]", "", entry.name if entry.is_dir() else entry.stem))
            > MAX_LABEL
        ):
            LOG.info(
                "%s: studyset label '%s' (the name is cut to %d characters plus a hash; "
                "the full name is kept in source_file of the output tables)",
                entry,
                label,
                MAX_LABEL,
            )
    return found
