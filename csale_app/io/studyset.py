"""One studyset, from wherever it comes, as a typed record: :func:`load_studyset`.

A source is a path (any format :func:`.readers.read_studyset` reads), a term's
:class:`.terms.TermStudyset`, a pandas DataFrame of foci or a NiMARE ``Dataset`` /
``nimads.Studyset``. In-memory sources never touch the disk: they are checked here, with
errors that name the DataFrame row (its index label) and column or the Dataset's study and
contrast, and become the same foci table a file gives, so the same experiment builder
(:mod:`.experiments`) places them on the grid.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .digest import file_digest
from .experiments import Experiments, build_experiments
from .read_common import coordinate, make_frame, sample_size_value, short, space_or_error
from .read_json import sample_size_of
from .read_tables import ALIASES, REQUIRED, canonical, normalize_column
from .readers import read_studyset, study_label
from .terms import TermStudyset

LOG = logging.getLogger(__name__)
#: Label of an in-memory studyset when none is given.
DEFAULT_LABEL = "studyset"


@dataclass(frozen=True)
class Source:
    """A studyset's foci as read, before they are placed on the grid."""

    foci: pd.DataFrame  # the readers' foci table (readers.COLUMNS)
    description: str  # what sidecars and the report name as the source
    digest: str  # of the file's bytes, or of the in-memory table's content
    path: Path | None  # the file or folder read (None: in memory)
    #: in memory: how errors name a row's sample size (1-based position -> "row 'a',
    #: column 'n'"), as the experiment builder reports it instead of file:line
    name_size: Callable[[int], str] | None = None


@dataclass(frozen=True)
class Studyset:
    """One studyset on the template grid: what every analysis of it starts from."""

    label: str
    experiments: Experiments
    digest: str  # of the source (file bytes, term rule, in-memory content): the reuse rule
    source: Path | TermStudyset | str  # file path, term rule, or an in-memory description
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How messages name it: the file name, the term's label, or the description."""
        return self.source.name if isinstance(self.source, (Path, TermStudyset)) else self.source


def in_memory(source) -> bool:
    """Whether ``source`` is a DataFrame or a NiMARE Dataset/Studyset (not a path)."""
    return not isinstance(source, (str, Path, TermStudyset))


def read_source(source) -> Source:
    """Read a path or an in-memory studyset into the foci table (no grid yet)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        foci = read_studyset(path)
        return Source(foci, str(path), file_digest(path), path)
    if hasattr(source, "to_dataset") and not hasattr(source, "coordinates"):
        return _dataset_source(source.to_dataset(), "NiMARE Studyset")  # nimare.nimads
    if hasattr(source, "coordinates") and hasattr(source, "metadata"):
        return _dataset_source(source, "NiMARE Dataset")
    if isinstance(source, pd.DataFrame):
        what = f"pandas DataFrame ({len(source)} rows)"
        foci, name_size = frame_foci(source, what, lambda label: f"row {label!r}")
        return Source(foci, what, table_digest(foci), None, name_size)
    raise TypeError(
        f"cannot read a studyset from {type(source).__name__}; give a path, a "
        "DataFrame of foci or a NiMARE Dataset/Studyset"
    )


def table_digest(foci: pd.DataFrame) -> str:
    """SHA-256 of an in-memory foci table's content (ids, coordinates, spaces, sizes)."""
    cols = ["study_id", "contrast_id", "x", "y", "z", "space", "sample_size"]
    h = hashlib.sha256(repr(cols).encode())
    h.update(pd.util.hash_pandas_object(foci[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()


def _columns(frame: pd.DataFrame, what: str) -> dict[str, object]:
    """Canonical field -> the frame's column (the first alias present, as for files)."""
    found: dict[str, object] = {}
    for col in frame.columns:
        canon = canonical(str(col))
        if canon is None:
            continue
        rank = ALIASES[canon].index(normalize_column(str(col)))
        if canon in found:
            old = ALIASES[canon].index(normalize_column(str(found[canon])))
            if old == rank:
                raise InputError(
                    what, None, f"columns {found[canon]!r} and {col!r} both give {canon}; keep one"
                )
            if old < rank:
                continue
        found[canon] = col
    missing = [c for c in (*REQUIRED, "space") if c not in found]
    if missing:
        raise InputError(
            what,
            None,
            f"missing required column(s) {', '.join(missing)}; "
            "a DataFrame of foci needs study_id, x, y, z and space (MNI or "
            "TAL), optional contrast_id and sample_size",
        )
    return found


def _blank(value) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
        or value is pd.NA
        or value is pd.NaT
    )


def frame_foci(frame: pd.DataFrame, what: str, row_name) -> tuple[pd.DataFrame, Callable]:
    """Check a DataFrame of foci; return the readers' foci table and how the experiment
    builder names a row's sample size (1-based position -> row and column).

    ``row_name(index label)`` says how a message names a row ("row 4", or a Dataset's
    study and contrast). Errors are :class:`~csale_app.errors.InputError` (a ValueError)
    naming ``what``, the row and the column."""
    cols = _columns(frame, what)
    if not len(frame):
        raise InputError(what, None, "no foci rows")
    labels = list(frame.index)

    def fail(pos: int, col, message: str):
        raise InputError(what, None, f"{row_name(labels[pos])}, column {str(col)!r}: {message}")

    def ids(field: str, default: str | None) -> list[str]:
        if field not in cols:
            return [default] * len(frame)
        out = []
        for pos, value in enumerate(frame[cols[field]].tolist()):
            if _blank(value):
                if default is None:
                    fail(pos, cols[field], f"empty {field}")
                out.append(default)
            else:
                out.append(str(value).strip())
        return out

    study_ids, contrast_ids = ids("study_id", None), ids("contrast_id", "1")
    xyz = []
    for axis in "xyz":
        values = frame[cols[axis]]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan) if numeric else None
        bad = np.flatnonzero(~np.isfinite(arr)) if numeric else []
        if numeric and not len(bad):
            xyz.append(arr)
            continue
        parsed = np.empty(len(frame))
        for pos, value in enumerate(values.tolist()):
            if _blank(value):
                fail(pos, cols[axis], f"{axis} coordinate is missing")
            where = f"{row_name(labels[pos])}, column {str(cols[axis])!r}: "
            parsed[pos] = coordinate(value, what, None, axis, where)
        xyz.append(parsed)
    spaces = []
    known: dict[object, str] = {}
    for pos, value in enumerate(frame[cols["space"]].tolist()):
        if _blank(value):
            fail(pos, cols["space"], "empty space value; fill it (MNI or TAL)")
        key = str(value)
        if key not in known:
            known[key] = space_or_error(
                value, what, None, f"{row_name(labels[pos])}, column {str(cols['space'])!r}: "
            )
        spaces.append(known[key])
    sizes = np.full(len(frame), np.nan)
    if "sample_size" in cols:
        for pos, value in enumerate(frame[cols["sample_size"]].tolist()):
            sizes[pos] = sample_size_value(
                None if value is pd.NA else value,
                what,
                None,
                f"{row_name(labels[pos])}, column {str(cols['sample_size'])!r}: ",
            )
    foci = pd.DataFrame({"s": study_ids, "c": contrast_ids, "space": spaces, "n": sizes})
    key = foci.groupby(["s", "c"], sort=False)
    first_space = key["space"].transform("first")
    mixed = np.flatnonzero(foci["space"].to_numpy() != first_space.to_numpy())
    if len(mixed):
        pos = int(mixed[0])
        fail(
            pos,
            cols["space"],
            f"experiment {short(study_ids[pos])}/"
            f"{short(contrast_ids[pos])} mixes spaces: {spaces[pos]} here, "
            f"{first_space.iloc[pos]} on an earlier row; use one space per experiment",
        )
    first_size = key["n"].transform("first").to_numpy()  # first given size, as for files
    differs = np.flatnonzero(~np.isnan(sizes) & (sizes != first_size))
    if len(differs):
        pos = int(differs[0])
        fail(
            pos,
            cols["sample_size"],
            f"experiment {short(study_ids[pos])}/"
            f"{short(contrast_ids[pos])} has sample size {sizes[pos]:g} here but "
            f"{first_size[pos]:g} on an earlier row",
        )
    records = {
        "study_id": study_ids,
        "contrast_id": contrast_ids,
        "x": xyz[0],
        "y": xyz[1],
        "z": xyz[2],
        "space": spaces,
        "sample_size": first_size,
        "source_line": np.arange(1, len(frame) + 1),
    }  # row position, 1-based
    size_column = str(cols.get("sample_size", "sample_size"))

    def name_size(line: int) -> str:
        return f"{row_name(labels[line - 1])}, column {size_column!r}"

    return make_frame(records, what, "dataframe", []), name_size


def _dataset_source(dset, kind: str) -> Source:
    """A NiMARE Dataset's foci; each contrast's sample size by the JSON readers' rule (the
    mean of a list, as NiMARE's ALE kernel uses)."""
    coords = dset.coordinates.copy()
    if callable(getattr(coords, "to_pandas", None)):
        coords = coords.to_pandas()
    meta = dset.metadata
    ids = coords["id"].astype(str)
    where = {
        i: f"study {s!r}, contrast {c!r}"
        for i, s, c in zip(ids, coords["study_id"].astype(str), coords["contrast_id"].astype(str))
    }
    what = f"{kind} ({coords['id'].nunique()} contrasts)"
    sizes: dict[str, float] = {}
    columns = [k for k in ("sample_size", "sample_sizes", "n_subjects", "subjects") if k in meta]
    for _, row in meta.iterrows():
        ident = str(row["id"])
        sizes[ident] = sample_size_of(
            what,
            {k: _plain(row[k]) for k in columns},
            None,
            where.get(ident, f"contrast {ident!r}"),
        )
    space = str(getattr(dset, "space", "MNI")).lower()
    frame = pd.DataFrame(
        {
            "study_id": coords["study_id"].astype(str).to_numpy(),
            "contrast_id": coords["contrast_id"].astype(str).to_numpy(),
            "x": coords["x"].to_numpy(),
            "y": coords["y"].to_numpy(),
            "z": coords["z"].to_numpy(),
            "space": "TAL" if "tal" in space else "MNI",
            "sample_size": ids.map(sizes).to_numpy(dtype=np.float64),
        },
        index=ids.to_numpy(),
    )
    foci, name_size = frame_foci(frame, what, lambda ident: where[ident])
    return Source(foci, what, table_digest(foci), None, name_size)


def _plain(value):
    """A metadata cell as JSON would hold it (arrays as lists, NaN as missing)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def load_studyset(
    source,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    *,
    label: str | None = None,
    merge_contrasts: bool = True,
    kernel_fwhm: float | None = None,
    default_sample_size: float | None = None,
    database: Experiments | None = None,
) -> Studyset:
    """Read ``source`` and place its experiments on the template grid.

    ``database``: the reference database's experiments, from which a
    :class:`.terms.TermStudyset` takes its studies."""
    if isinstance(source, TermStudyset):
        exps = database.subset(source.experiment_mask(database.study_ids))
        return Studyset(label or source.label, exps, source.digest, source)
    read = read_source(source)
    foci = read.foci
    warnings = list(foci.attrs.get("warnings", []))
    exps = build_experiments(
        foci,
        affine,
        shape,
        merge_contrasts=merge_contrasts,
        kernel_fwhm=kernel_fwhm,
        default_sample_size=default_sample_size,
        name_size=read.name_size,
    )
    name = read.path.name if read.path is not None else read.description
    warnings += [f"{name}: {w}" for w in exps.warnings]
    if label is None:
        label = study_label(read.path) if read.path is not None else DEFAULT_LABEL
    return Studyset(
        label,
        exps,
        read.digest,
        read.path if read.path is not None else read.description,
        tuple(warnings),
    )
