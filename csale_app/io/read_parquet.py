"""NiMARE parquet studyset folders (``studyset.json`` + ``coordinates.parquet`` ...)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from csale_app.errors import InputError
from csale_app.io.read_common import (
    check_regular_file,
    decode_text,
    id_list,
    make_frame,
    max_input_bytes,
    normalize_space,
    parse_number,
    read_bytes,
)

PARQUET_FORMAT = "nimare-studyset-parquet"
COUNT_COLUMN = "ParticipantDemographicsExtractor.groups[0].count"


def is_parquet_studyset(path: Path) -> bool:
    """True for a folder whose studyset.json says format nimare-studyset-parquet."""
    index = Path(path) / "studyset.json"
    if not index.is_file():
        return False
    try:
        if index.stat().st_size > max_input_bytes():
            return True  # read_parquet_studyset refuses it by name
        return json.loads(index.read_text(encoding="utf-8-sig")).get("format") == PARQUET_FORMAT
    except RecursionError:  # so deep it cannot be checked: read it, to refuse it by name
        return True
    except (OSError, ValueError, AttributeError):
        return False


def _table(folder: Path, tables: dict, name: str, columns=None, required=True):
    file = folder / str(tables.get(name, f"{name}.parquet"))
    if os.path.lexists(file):
        check_regular_file(file)  # a FIFO, device or link loop: refused, never opened
    if not file.is_file():
        if not required:
            return None, file
        raise InputError(
            folder / "studyset.json", 1, f"table {file.name} is missing from the folder"
        )
    try:
        if columns is not None:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(file).names)
            columns = [c for c in columns if c in names]
        return pd.read_parquet(file, columns=columns), file
    except InputError:
        raise
    except Exception as err:  # pyarrow raises many kinds on a damaged file
        msg = " ".join(str(err).split())[:200]
        raise InputError(file, 1, f"cannot read parquet table: {msg}") from None


def _size(value) -> float:
    """A positive sample size from a metadata cell (list -> mean), NaN if not usable."""
    if value is None:
        return math.nan
    if isinstance(value, (list, tuple, np.ndarray)):
        sizes = [_size(v) for v in value]
        sizes = [s for s in sizes if not math.isnan(s)]
        return float(np.mean(sizes)) if sizes else math.nan
    try:
        number = parse_number(value)
    except ValueError:
        return math.nan
    if number is None or number <= 0:
        return math.nan
    return number


def read_parquet_studyset(
    path: Path, where: dict | None = None, *, unknown_space: str = "drop"
) -> pd.DataFrame:
    """Read a NiMARE parquet studyset folder.

    ``where`` selects analyses by metadata columns ({column: value or list of values}).
    Experiments in space OTHER/UNKNOWN are dropped with a warning (``unknown_space="drop"``)
    or kept as MNI with a warning (``unknown_space="mni"``).
    """
    folder = Path(path)
    if unknown_space not in ("drop", "mni"):
        raise ValueError("unknown_space must be 'drop' or 'mni'")
    index = folder / "studyset.json"
    if not index.is_file():
        raise InputError(folder, None, "not a parquet studyset folder: studyset.json is missing")
    try:
        meta = json.loads(decode_text(index, read_bytes(index)))
    except json.JSONDecodeError as err:
        raise InputError(index, err.lineno, f"not valid JSON: {err.msg}") from None
    except RecursionError:
        raise InputError(index, 1, "JSON is nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != PARQUET_FORMAT:
        raise InputError(index, 1, f"'format' must be {PARQUET_FORMAT!r}")
    tables = meta.get("tables") if isinstance(meta.get("tables"), dict) else {}

    coords, cfile = _table(folder, tables, "coordinates")
    needed = ["study_id", "contrast_id", "x", "y", "z", "space"]
    absent = [c for c in needed if c not in coords.columns]
    if absent:
        raise InputError(cfile, 1, f"missing column(s) {', '.join(absent)}")
    coords = coords.assign(source_line=np.arange(1, len(coords) + 1, dtype=np.int64))
    key = coords["study_id"].astype(str) + "\x00" + coords["contrast_id"].astype(str)
    warnings: list[str] = []

    metadata, mfile = _table(folder, tables, "metadata", required=where is not None)
    if metadata is not None:
        if not {"study_id", "contrast_id"} <= set(metadata.columns):
            raise InputError(mfile, 1, "missing column(s) study_id/contrast_id")
        mkey = metadata["study_id"].astype(str) + "\x00" + metadata["contrast_id"].astype(str)
    if where:
        selected = pd.Series(True, index=metadata.index)
        for column, wanted in where.items():
            if column not in metadata.columns:
                raise InputError(mfile, 1, f"no metadata column {column!r} to select on")
            values = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
            selected &= metadata[column].isin(values)
        if not selected.any():
            raise InputError(mfile, 1, f"no analysis matches {where!r}")
        coords = coords[key.isin(set(mkey[selected]))]
        key = key[coords.index]
        metadata = metadata[selected]
        mkey = mkey[selected]

    xyz = coords[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce")
    coords = coords.assign(x=xyz["x"], y=xyz["y"], z=xyz["z"])
    bad_xyz = ~np.isfinite(xyz.to_numpy(dtype=np.float64)).all(axis=1)
    if bad_xyz.any():
        row = int(coords["source_line"].to_numpy()[bad_xyz][0])
        raise InputError(cfile, row, "missing, non-numeric, NaN or infinite coordinate")

    space = coords["space"].astype(str).str.strip()
    normalized = space.map(lambda s: normalize_space(s) or "?")
    unknown = normalized == "?"
    if unknown.any():
        names = sorted(set(space[unknown]))
        exp_bad = sorted(set(key[unknown]))
        shown = [k.replace("\x00", "/") for k in exp_bad]
        n_foci = int(key.isin(exp_bad).sum())
        if unknown_space == "drop":
            warnings.append(
                f"{folder}: dropped {len(exp_bad)} experiment(s) ({n_foci} foci) with "
                f"coordinate space {'/'.join(names)}: {id_list(shown)}"
            )
            keep = ~key.isin(exp_bad)
            coords, key, normalized = coords[keep], key[keep], normalized[keep]
        else:
            warnings.append(
                f"{folder}: {len(exp_bad)} experiment(s) with coordinate space "
                f"{'/'.join(names)} treated as MNI: {id_list(shown)}"
            )
            normalized = normalized.where(~unknown, "MNI")
    mixed = normalized.groupby(key).nunique()
    if (mixed > 1).any():
        bad = sorted(mixed.index[mixed > 1])
        warnings.append(
            f"{folder}: dropped {len(bad)} experiment(s) mixing MNI and TAL foci: "
            f"{id_list([k.replace(chr(0), '/') for k in bad])}"
        )
        keep = ~key.isin(bad)
        coords, key, normalized = coords[keep], key[keep], normalized[keep]
    if coords.empty:
        raise InputError(cfile, 1, "no coordinates left in this studyset")

    sizes = pd.Series(math.nan, index=pd.Index(sorted(set(key)), dtype=object))
    if metadata is not None:
        for column in ("sample_sizes", "sample_size", "n_subjects", "subjects"):
            if column in metadata.columns:
                values = pd.Series(metadata[column].map(_size).to_numpy(), index=mkey.to_numpy())
                values = values[~values.index.duplicated()]
                fill = values.reindex(sizes.index)
                sizes = sizes.where(sizes.notna(), fill)
    if sizes.isna().any():
        ann, _ = _table(
            folder, tables, "annotations", ["study_id", "contrast_id", COUNT_COLUMN], required=False
        )
        if ann is not None and COUNT_COLUMN in ann.columns:
            akey = ann["study_id"].astype(str) + "\x00" + ann["contrast_id"].astype(str)
            values = pd.Series(ann[COUNT_COLUMN].map(_size).to_numpy(), index=akey.to_numpy())
            values = values[~values.index.duplicated()]
            sizes = sizes.where(sizes.notna(), values.reindex(sizes.index))
    missing = int(sizes.isna().sum())
    if missing:
        warnings.append(f"{folder}: {missing} experiment(s) have no sample size")

    records = {
        "study_id": coords["study_id"].astype(str).tolist(),
        "contrast_id": coords["contrast_id"].astype(str).tolist(),
        "x": coords["x"].to_numpy(np.float64),
        "y": coords["y"].to_numpy(np.float64),
        "z": coords["z"].to_numpy(np.float64),
        "space": normalized.tolist(),
        "sample_size": sizes.reindex(key.to_numpy()).to_numpy(np.float64),
        "source_line": coords["source_line"].to_numpy(np.int64),
    }
    return make_frame(records, folder, "nimare-parquet", warnings)
