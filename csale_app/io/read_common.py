"""Shared pieces of the input readers: the foci schema, space names, numbers, text."""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from csale_app.errors import (
    InputError,
    InputNotFoundError,
    InputPermissionError,
    MissingInputError,
    display_path,
)

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
    """ "MNI" or "TAL" for a known space name (case-insensitive), else None."""
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
        raise InputError(path, line, f"{where}{axis} coordinate {short(token)} is not a number")
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
        raise InputError(path, line, f"{where}sample size {short(token)} is not a number")
    if value <= 0:
        raise InputError(path, line, f"{where}sample size {short(token)} must be a positive number")
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
            f"byte 0x{data[err.start]:02x} is not valid UTF-8 text; save the file as UTF-8",
        ) from None


#: Largest input file read into memory, in MiB (env ``CSALE_MAX_INPUT_MB`` overrides).
MAX_INPUT_MB = 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def max_input_bytes() -> int:
    try:
        mb = float(os.environ.get("CSALE_MAX_INPUT_MB", MAX_INPUT_MB))
    except ValueError:
        mb = MAX_INPUT_MB
    return int(mb * 2**20)


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _unreadable(path, err: OSError):
    """The error for an input that cannot be opened: 66 (missing/unreadable) or 65."""
    if err.errno == errno.ELOOP:
        return MissingInputError(
            f"{display_path(path)}: cannot be read: symbolic link loop "
            "(too many levels of symbolic links)"
        )
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return InputNotFoundError(
            f"{display_path(path)}: cannot be read: no such file (a broken symbolic link?)"
        )
    if err.errno in (errno.EACCES, errno.EPERM):
        return InputPermissionError(f"{display_path(path)}: cannot be read: permission denied")
    return InputError(path, None, f"cannot read file: {err.strerror or err}")


def check_regular_file(path) -> os.stat_result:
    """stat of ``path`` (links followed) if it is a regular file within the size cap, else
    an error naming it: never blocks (a FIFO is not opened), never reads a device."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise _unreadable(path, err) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            path,
            None,
            f"is {kind_of(st.st_mode)}, not a regular file; only "
            "regular files (or links to them) are read",
        )
    limit = max_input_bytes()
    if st.st_size > limit:
        raise InputError(
            path,
            None,
            f"file is {st.st_size / 2**20:.0f} MiB, larger than the "
            f"{limit / 2**20:.0f} MiB limit for one input file (set "
            "CSALE_MAX_INPUT_MB to raise it)",
        )
    return st


def read_bytes(path: Path) -> bytes:
    """Content of a regular input file.

    Opened non-blocking and checked with fstat before reading, so a FIFO, socket or
    device (also behind a symbolic link) is refused at once instead of blocking or
    filling memory; a file over the size cap is refused too. Unreadable (permissions) or
    unresolvable (link loop) files are MissingInputError (exit 66), other failures
    InputError (exit 65).
    """
    check_regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise _unreadable(path, err) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
            raise InputError(path, None, f"is {kind_of(st.st_mode)}, not a regular file")
        limit = max_input_bytes()
        chunks, total = [], 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            total += len(block)
            if total > limit:
                raise InputError(
                    path,
                    None,
                    f"file is larger than the {limit / 2**20:.0f} MiB "
                    "limit for one input file (set CSALE_MAX_INPUT_MB to raise it)",
                )
            chunks.append(block)
        return b"".join(chunks)
    except OSError as err:
        raise _unreadable(path, err) from None
    finally:
        os.close(fd)


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
