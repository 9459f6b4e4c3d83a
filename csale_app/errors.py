"""Errors that end a run with a BIDS-App exit code and one line on stderr."""

from __future__ import annotations

import contextlib
import errno
import os

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_EMPTY_SELECTION = 18
EXIT_USAGE = 64
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a service (the Dask cluster) cannot be used
EXIT_CANT_CREATE = 73


class CsaleError(Exception):
    """Base class: an error the CLI reports as one line and maps to an exit code.

    Each subclass also derives from the Python built-in that says the same thing
    (``ValueError``, ``FileNotFoundError``, ``PermissionError``, ``OSError``,
    ``RuntimeError``), so API users catch them with ordinary ``except`` clauses."""

    exit_code = EXIT_FAILURE

    def __str__(self) -> str:
        # OSError subclasses would otherwise format their (errno, strerror) pair
        return str(self.args[0]) if self.args else ""

    def one_line(self) -> str:
        return " ".join(str(self).split())


def display_path(path) -> str:
    """A path as printable text: undecodable bytes of a file name shown as ``\\xff``
    escapes (a name that is not valid UTF-8 must never raise UnicodeEncodeError when it
    is printed or logged)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):  # newlines, ESC in a name
        text = "".join(
            f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text
        )
    return text


class InputError(CsaleError, ValueError):
    """Malformed input data: names the file, the line/row and what is wrong (exit 65)."""

    exit_code = EXIT_DATA

    def __init__(self, path, line, message: str):
        self.path = display_path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class MissingInputError(CsaleError, OSError):
    """A required input is missing or unreadable (exit 66)."""

    exit_code = EXIT_NO_INPUT


class InputNotFoundError(MissingInputError, FileNotFoundError):
    """A required input does not exist (exit 66)."""


class InputPermissionError(MissingInputError, PermissionError):
    """A required input exists but cannot be read: permissions (exit 66)."""


class EmptySelectionError(CsaleError, ValueError):
    """Nothing to analyse: no studyset, or none with enough experiments (exit 18)."""

    exit_code = EXIT_EMPTY_SELECTION


class OutputError(CsaleError, OSError):
    """The output cannot be created or would clobber other results (exit 73)."""

    exit_code = EXIT_CANT_CREATE


class UsageError(CsaleError, ValueError):
    """Options that cannot give a valid result, found after parsing (exit 64)."""

    exit_code = EXIT_USAGE


class ServiceUnavailableError(CsaleError, ConnectionError):
    """The Dask scheduler cannot be reached, or was lost mid-run, or its workers keep dying
    on a chunk (exit 69, EX_UNAVAILABLE). Finished permutation chunks stay checkpointed."""

    exit_code = EXIT_UNAVAILABLE


class DeviceError(CsaleError, RuntimeError):
    """The requested compute device is not usable (exit 1)."""

    exit_code = EXIT_FAILURE


#: What a failed write means, in words, by errno (the message names the path too).
_WRITE_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit exceeded (ulimit -f / RLIMIT_FSIZE)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long for the file system",
    errno.EIO: "input/output error",
}
#: errnos that mean "this output cannot be written" (exit 73), not a bug.
WRITE_ERRNOS = frozenset(_WRITE_CAUSES)

RESUME_HINT = (
    "free space or fix the permissions and run the same command again; finished "
    "permutation chunks are kept and resumed"
)


def write_cause(exc: OSError) -> str:
    """'no space left on the device' etc. for an OSError of a write."""
    if exc.errno in _WRITE_CAUSES:
        return _WRITE_CAUSES[exc.errno]
    return exc.strerror or type(exc).__name__


def output_error(path, exc: OSError, doing: str = "cannot write") -> OutputError:
    """An OutputError (73) naming ``path``, what failed and why, with the resume hint for
    space problems."""
    cause = write_cause(exc)
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = f"; {RESUME_HINT}"
    err = OutputError(f"{display_path(path)}: {doing}: {cause}{hint}")
    err.errno = exc.errno
    return err


@contextlib.contextmanager
def write_errors(path, doing: str = "cannot write"):
    """Turn an OSError of a write (no space, file size limit, permissions, read-only file
    system, quota: ``WRITE_ERRNOS``) into :func:`output_error` naming ``path``; others pass."""
    try:
        yield
    except CsaleError:
        raise  # already says what failed (an OutputError is an OSError too)
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise output_error(path, exc, doing) from None
        raise
