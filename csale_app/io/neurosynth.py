"""Neurosynth v7 and NeuroQuery v1 file sets, recognised by their file names, read fast.

A file set is a folder holding (``<db>`` ``neurosynth`` or ``neuroquery``)::

    data-<db>_version-<v>_coordinates.tsv.gz   id, (table_id, table_num, peak_id,) x, y, z
    data-<db>_version-<v>_metadata.tsv.gz      id, (doi, space, title, authors, year, journal)
    data-<db>_version-<v>_vocab-<vocab>_source-<source>_type-<type>_features.npz
    data-<db>_version-<v>_vocab-<vocab>_vocabulary.txt

(the names NiMARE's ``fetch_neurosynth``/``fetch_neuroquery`` download; feature rows are
the metadata's studies in order, columns the vocabulary's terms). One study is one
experiment (all its tables pooled, as Neurosynth does; contrast id ``1``, as NiMARE's
``convert_neurosynth_to_dataset``). The space is per study, from the metadata: TAL is
converted like every Talairach focus, ``UNKNOWN`` is treated as MNI (as Neurosynth and
NiMARE do), counted and warned; NeuroQuery's coordinates are MNI. The files carry no sample
sizes: :func:`.experiments.fill_default_sample_size` refuses them unless
``--default-sample-size`` or ``--kernel-fwhm`` is given.

Every problem is an :class:`~csale_app.errors.InputError` (exit 65) naming the file and the
line: a truncated gzip, a ragged or non-numeric row, duplicate ids, a coordinate row whose
study is not in the metadata, a focus outside the template.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .read_common import COLUMNS, check_regular_file, normalize_space, short
from .read_tables import str_series

LOG = logging.getLogger(__name__)

DATABASES = {"neurosynth": "Neurosynth", "neuroquery": "NeuroQuery"}
FORMATS = tuple(DATABASES)
_PREFIX = r"data-(?P<db>neurosynth|neuroquery)_version-(?P<version>[A-Za-z0-9]+)_"
_COORDS = re.compile(_PREFIX + r"coordinates\.tsv\.gz$")
_META = re.compile(_PREFIX + r"metadata\.tsv\.gz$")
_FEATURES = re.compile(
    _PREFIX + r"vocab-(?P<vocab>[A-Za-z0-9]+)_source-(?P<source>[A-Za-z0-9]+)"
    r"_type-(?P<type>[A-Za-z0-9]+)_features\.npz$"
)
_VOCAB = re.compile(_PREFIX + r"vocab-(?P<vocab>[A-Za-z0-9]+)_vocabulary\.txt$")
#: Metadata spaces read as MNI with a warning (Neurosynth's label for "not reported").
UNKNOWN_SPACES = ("unknown", "", "n/a", "na", "nan", "none")


@dataclass(frozen=True)
class FeatureSet:
    """One features matrix and its vocabulary; ``name`` as NiMARE's feature group."""

    vocab: str
    source: str
    type: str
    features: Path
    vocabulary: Path

    @property
    def name(self) -> str:
        return f"{self.vocab}_{self.source}_{self.type}"


@dataclass(frozen=True)
class FileSet:
    folder: Path
    database: str  # "neurosynth" | "neuroquery"
    version: str
    coordinates: Path
    metadata: Path
    feature_sets: tuple[FeatureSet, ...] = ()

    @property
    def title(self) -> str:
        return f"{DATABASES[self.database]} v{self.version}"


def find_fileset(folder) -> FileSet | None:
    """The file set in ``folder`` (None when it holds none); half a set, two sets, or a
    features file without its vocabulary is an InputError naming the folder or file."""
    folder = Path(folder)
    try:
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return None
    sets: dict[tuple[str, str], dict] = {}
    for name in names:
        for kind, pattern in (
            ("coordinates", _COORDS),
            ("metadata", _META),
            ("features", _FEATURES),
            ("vocabulary", _VOCAB),
        ):
            m = pattern.match(name)
            if m:
                entry = sets.setdefault((m["db"], m["version"]), {"features": [], "vocabulary": {}})
                if kind == "features":
                    entry["features"].append(m)
                elif kind == "vocabulary":
                    entry["vocabulary"][m["vocab"]] = folder / name
                else:
                    entry[kind] = folder / name
    complete = {k: v for k, v in sets.items() if "coordinates" in v or "metadata" in v}
    if not complete:
        return None
    if len(complete) > 1:
        shown = ", ".join(f"{DATABASES[d]} v{v}" for d, v in sorted(complete))
        raise InputError(
            folder, None, f"holds several database file sets ({shown}); keep one per folder"
        )
    (db, version), entry = next(iter(complete.items()))
    for kind in ("coordinates", "metadata"):
        if kind not in entry:
            have = entry.get("metadata" if kind == "coordinates" else "coordinates")
            raise InputError(
                folder,
                None,
                f"{have.name} needs data-{db}_version-{version}_{kind}.tsv.gz beside it",
            )
    features = []
    for m in entry["features"]:
        path = folder / m.string
        vocabulary = entry["vocabulary"].get(m["vocab"])
        if vocabulary is None:
            raise InputError(
                path,
                None,
                f"its vocabulary data-{db}_version-{version}_vocab-"
                f"{m['vocab']}_vocabulary.txt is missing from the folder",
            )
        features.append(FeatureSet(m["vocab"], m["source"], m["type"], path, vocabulary))
    return FileSet(folder, db, version, entry["coordinates"], entry["metadata"], tuple(features))


def is_fileset(path) -> bool:
    path = Path(path)
    return path.is_dir() and find_fileset(path) is not None


# ---- reading ------------------------------------------------------------------------------
def read_gzip(path: Path) -> bytes:
    """The decompressed bytes of a ``.gz`` input (a truncated or damaged file is named)."""
    check_regular_file(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise InputError(path, None, f"cannot read file: {err.strerror or err}") from None
    try:
        return gzip.decompress(data)
    except EOFError:
        raise InputError(
            path,
            None,
            "truncated gzip file (it ends before the end of the "
            "compressed stream); download it again",
        ) from None
    except (OSError, zlib.error) as err:
        raise InputError(path, None, f"damaged gzip file ({err}); download it again") from None


def _check_fields(path: Path, data: bytes) -> None:
    """Every line has the header's number of tab-separated fields (numbers only: no quoted
    tabs or newlines), counted without splitting 500,000 lines in Python."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    if not len(data) or data[-1:] != b"\n":
        ends = np.r_[ends, len(data)]
    tabs = np.bincount(np.searchsorted(ends, np.flatnonzero(arr == 9)), minlength=len(ends))
    starts = np.r_[0, ends[:-1] + 1]
    empty = (ends - starts) <= (arr[np.maximum(ends - 1, 0)] == 13)  # "" or "\r"
    bad = np.flatnonzero((tabs != tabs[0]) & ~empty)
    if len(bad):
        raise InputError(
            path,
            int(bad[0]) + 1,
            f"{int(tabs[bad[0]]) + 1} fields, but the header has {int(tabs[0]) + 1}",
        )


def _read_tsv(path: Path, columns: dict[str, object], strict: bool = False) -> pd.DataFrame:
    """The tab-separated table in gzip file ``path``: ``columns`` {name: dtype or None for
    optional text}; a ragged row (``strict``: checked on every line) or a missing required
    column is an InputError with its line (1 = the header)."""
    data = read_gzip(path)
    if strict:
        _check_fields(path, data)
    header = data[: data.find(b"\n")].decode("utf-8", "replace").rstrip("\r").split("\t")
    header = [h.strip() for h in header]
    for name, dtype in columns.items():
        if dtype is not None and name not in header:
            raise InputError(path, 1, f"missing column '{name}' (found: {', '.join(header)})")
    use = [c for c in columns if c in header]
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep="\t",
            usecols=use,
            engine="c",
            dtype={c: (columns[c] or str) for c in use},
            keep_default_na=False,
            na_values=[""],
        )
    except pd.errors.ParserError as err:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if m:
            raise InputError(path, int(m[2]), f"{m[3]} fields, but the header has {m[1]}") from None
        raise InputError(path, None, f"cannot parse table: {' '.join(str(err).split())}") from None
    except (ValueError, UnicodeDecodeError):  # a non-numeric cell in a numeric column
        frame = pd.read_csv(
            io.BytesIO(data), sep="\t", usecols=use, dtype=str, keep_default_na=False, engine="c"
        )
        for name in use:
            if columns[name] is not None and columns[name] is not str:
                values = pd.to_numeric(frame[name], errors="coerce")
                bad = np.flatnonzero(values.isna().to_numpy() & frame[name].ne("").to_numpy())
                if len(bad):
                    raise InputError(
                        path,
                        int(bad[0]) + 2,
                        f"{name} {short(frame[name][bad[0]])} is not a number",
                    ) from None
        raise InputError(path, None, "cannot parse table (not UTF-8 text?)") from None
    return frame


def read_metadata(fs: FileSet) -> pd.DataFrame:
    """The metadata's ``id`` (str, unique) and ``space`` (MNI/TAL/UNKNOWN) per study, in
    file order; ``line`` is the 1-based line of each study."""
    meta = _read_tsv(fs.metadata, {"id": str, "space": None})
    ids = meta["id"].fillna("").str.strip()
    if (ids == "").any():
        raise InputError(fs.metadata, int(np.flatnonzero(ids == "")[0]) + 2, "empty id")
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(ids.to_numpy() == ids.iloc[row])[0])
        raise InputError(
            fs.metadata,
            row + 2,
            f"duplicate id {short(ids.iloc[row])} (also on line {first + 2}); ids must be unique",
        )
    if "space" in meta.columns:
        raw = meta["space"].fillna("").astype(str).str.strip()
    else:  # NeuroQuery's coordinates are MNI; Neurosynth without spaces: as NiMARE, UNKNOWN
        raw = pd.Series("MNI" if fs.database == "neuroquery" else "UNKNOWN", index=meta.index)
    codes, uniq = pd.factorize(raw)
    mapped = []
    for k, value in enumerate(uniq):
        space = normalize_space(value)
        if space is None and value.lower() in UNKNOWN_SPACES:
            space = "UNKNOWN"
        if space is None:
            row = int(np.flatnonzero(codes == k)[0])
            raise InputError(
                fs.metadata,
                row + 2,
                f"unknown coordinate space {short(value)} (expected MNI, TAL or UNKNOWN)",
            )
        mapped.append(space)
    return pd.DataFrame(
        {
            "id": ids.to_numpy(dtype=object),
            "space": np.asarray(mapped, dtype=object)[codes] if len(codes) else np.zeros(0, object),
            "line": np.arange(2, len(ids) + 2, dtype=np.int64),
        }
    )


def read_fileset(fs: FileSet) -> pd.DataFrame:
    """The file set's foci as the readers' foci table (:data:`.read_common.COLUMNS`), in
    coordinates-file order. ``attrs["refuse_outside"]`` makes
    :func:`.experiments.place_foci` refuse a focus outside the template (naming its line)
    instead of dropping it: in a database of 500,000 foci a dropped focus goes unseen."""
    meta = read_metadata(fs)
    coords = _read_tsv(
        fs.coordinates, {"id": str, "x": np.float64, "y": np.float64, "z": np.float64}, strict=True
    )
    n = len(coords)
    ids = coords["id"].fillna("").str.strip().to_numpy(dtype=object)
    xyz = coords[["x", "y", "z"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(xyz).all(axis=1) | (ids == "")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "empty id" if ids[row] == "" else "missing, NaN or infinite coordinate"
        raise InputError(fs.coordinates, row + 2, what)
    where = pd.Index(meta["id"]).get_indexer(ids)
    if (where < 0).any():
        row = int(np.flatnonzero(where < 0)[0])
        raise InputError(
            fs.coordinates, row + 2, f"study id {short(ids[row])} is not in {fs.metadata.name}"
        )
    space = meta["space"].to_numpy()[where]
    unknown = space == "UNKNOWN"
    warnings = []
    has_coords = np.zeros(len(meta), dtype=bool)
    has_coords[where] = True
    n_unknown = int((meta["space"].to_numpy()[has_coords] == "UNKNOWN").sum())
    if n_unknown:
        warnings.append(
            f"{fs.metadata.name}: {n_unknown} of {int(has_coords.sum())} studies "
            "have coordinate space UNKNOWN and are treated as MNI (as Neurosynth "
            "and NiMARE do)"
        )
    if not has_coords.all():
        warnings.append(
            f"{fs.metadata.name}: {int((~has_coords).sum())} studies have no "
            f"coordinates in {fs.coordinates.name} (not experiments)"
        )
    space = np.where(unknown, "MNI", space)
    frame = pd.DataFrame(
        {
            "study_id": str_series(ids),
            "contrast_id": str_series(np.full(1, "1", object), n),
            "x": xyz[:, 0].copy(),
            "y": xyz[:, 1].copy(),
            "z": xyz[:, 2].copy(),
            "space": str_series(space.astype(object)),
            "sample_size": np.full(n, np.nan),
            "source_file": str_series(np.full(1, str(fs.coordinates), object), n),
            "source_line": np.arange(2, n + 2, dtype=np.int64),
        },
        columns=COLUMNS,
    )
    frame.attrs["warnings"] = warnings
    frame.attrs["format"] = fs.database
    frame.attrs["no_sample_sizes"] = f"{fs.metadata} ({fs.title})"
    frame.attrs["n_unknown_space"] = n_unknown
    frame.attrs["refuse_outside"] = True
    return frame
