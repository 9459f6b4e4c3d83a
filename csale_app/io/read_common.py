"""Shared pieces of the input readers: the foci schema, space names, numbers, text."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from csale_app.errors import InputError

#: Columns of the internal foci table, in this order.
COLUMNS = [
    "study_id",
    "contrast_id",
    "x",
    "y",
    "z",
    "space",
    "sample_size",
    "source_file",
    "source_line",
]

_MNI = {
    "mni",
    "mni152",
    "icbm",
    "icbm152",
    "mni1522mm",
    "mni152nlin6asym",
    "mni152nlin2009casym",
    "mniicbm152",
    "spm",
    "fsl",
}
_TAL = {"tal", "talairach"}

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NONFINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def normalize_space(value) -> str | None:
    """"MNI" or "TAL" for a known space name (case-insensitive), else None."""
    if not isinstance(value, str):
        return None
    key = re.sub(r"[\s_\-]+", "", value).lower()
    if key in _MNI:
        return "MNI"
    if key in _TAL:
        return "TAL"
    return None


def space_or_error(value, path, line, where: str = "") -> str:
    """Normalized space, or InputError naming the unknown value."""
    space = normalize_space(value)
    if space is None:
        shown = short(value)
        raise InputError(
            path,
            line,
            f"{where}unknown coordinate space {shown} (expected MNI or Talairach)",
        )
    return space


def short(value, limit: int = 40) -> str:
    """repr of a value cut to one short line (for messages)."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]
    try:
        text = " ".join(repr(value).split())
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_number(token) -> float | None:
    """A finite float from a number or numeric string; None if not numeric.

    Raises ValueError("nonfinite") for NaN/inf so callers can word the message.
    """
    if isinstance(token, bool) or token is None:
        return None
    if isinstance(token, (int, float, np.integer, np.floating)):
        try:
            value = float(token)
        except OverflowError:
            raise ValueError("nonfinite") from None
        if not math.isfinite(value):
            raise ValueError("nonfinite")
        return value
    if not isinstance(token, str):
        return None
    text = token.strip()
    if _NUMBER.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):  # e.g. 1e999
            raise ValueError("nonfinite")
        return value
    if _NONFINITE.fullmatch(text):
        raise ValueError("nonfinite")
    return None


def coordinate(token, path, line, axis: str, where: str = "") -> float:
    """Parse one coordinate or raise an InputError that says what is wrong."""
    try:
        value = parse_number(token)
    except ValueError:
        raise InputError(
            path,
            line,
            f"{where}{axis} coordinate {short(token)} is not finite (NaN/inf are not allowed)",
        ) from None
    if value is None:
        if token is None or (isinstance(token, str) and not token.strip()):
            raise InputError(path, line, f"{where}{axis} coordinate is missing")
        raise InputError(
            path, line, f"{where}{axis} coordinate {short(token)} is not a number"
        )
    return value


def sample_size_value(token, path, line, where: str = "") -> float:
    """Parse a sample size: NaN if missing, else a positive finite number."""
    if token is None:
        return math.nan
    if isinstance(token, float) and math.isnan(token):
        return math.nan
    if isinstance(token, str) and token.strip().lower() in ("", "n/a", "na", "nan", "none"):
        return math.nan
    try:
        value = parse_number(token)
    except ValueError:
        raise InputError(
            path, line, f"{where}sample size {short(token)} is not a finite number"
        ) from None
    if value is None:
        raise InputError(
            path, line, f"{where}sample size {short(token)} is not a number"
        )
    if value <= 0:
        raise InputError(
            path, line, f"{where}sample size {short(token)} must be a positive number"
        )
    return value


def decode_text(path: Path, data: bytes) -> str:
    """UTF-8 text (BOM stripped), or InputError with the line of the bad byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(
            path,
            line,
            f"byte 0x{data[err.start]:02x} is not valid UTF-8 text; "
            "save the file as UTF-8",
        ) from None


def read_bytes(path: Path) -> bytes:
    """File content; an unreadable file is an InputError (the caller checked it exists)."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InputError(path, None, f"cannot read file: {err.strerror or err}") from None


def split_lines(text: str) -> list[str]:
    """Lines split on LF, CRLF or CR (not on other Unicode separators)."""
    return re.split(r"\r\n|\r|\n", text)


def make_frame(records: dict, path, fmt: str, warnings: list[str]) -> pd.DataFrame:
    """Build the schema frame from column lists (same length each)."""
    n = len(records["x"])
    frame = pd.DataFrame(
        {
            "study_id": pd.Series(list(records["study_id"]), dtype=str),
            "contrast_id": pd.Series(list(records["contrast_id"]), dtype=str),
            "x": np.asarray(records["x"], dtype=np.float64),
            "y": np.asarray(records["y"], dtype=np.float64),
            "z": np.asarray(records["z"], dtype=np.float64),
            "space": pd.Series(list(records["space"]), dtype=str),
            "sample_size": np.asarray(records["sample_size"], dtype=np.float64),
            "source_file": pd.Series([str(path)] * n, dtype=str),
            "source_line": np.asarray(records["source_line"], dtype=np.int64),
        },
        columns=COLUMNS,
    )
    frame.attrs["warnings"] = list(warnings)
    frame.attrs["format"] = fmt
    return frame


def new_records() -> dict:
    return {name: [] for name in COLUMNS if name != "source_file"}


def add_focus(records, study_id, contrast_id, xyz, space, sample_size, line) -> None:
    records["study_id"].append(str(study_id))
    records["contrast_id"].append(str(contrast_id))
    records["x"].append(xyz[0])
    records["y"].append(xyz[1])
    records["z"].append(xyz[2])
    records["space"].append(space)
    records["sample_size"].append(sample_size)
    records["source_line"].append(int(line))


def id_list(ids, limit: int = 10) -> str:
    """'a, b, c (+N more)' for messages."""
    ids = [str(i) for i in ids]
    head = ", ".join(ids[:limit])
    return head + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")
