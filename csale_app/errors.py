"""Errors that end a run with a BIDS-App exit code and one line on stderr."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_EMPTY_SELECTION = 18
EXIT_USAGE = 64
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73


class CsaleError(Exception):
    """Base class: an error the CLI reports as one line and maps to an exit code."""

    exit_code = EXIT_FAILURE

    def one_line(self) -> str:
        return " ".join(str(self).split())


class InputError(CsaleError):
    """Malformed input data: names the file, the line/row and what is wrong (exit 65)."""

    exit_code = EXIT_DATA

    def __init__(self, path, line, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class MissingInputError(CsaleError):
    """A required input is missing or unreadable (exit 66)."""

    exit_code = EXIT_NO_INPUT


class EmptySelectionError(CsaleError):
    """Nothing to analyse: no studyset, or none with enough experiments (exit 18)."""

    exit_code = EXIT_EMPTY_SELECTION


class OutputError(CsaleError):
    """The output cannot be created or would clobber other results (exit 73)."""

    exit_code = EXIT_CANT_CREATE


class DeviceError(CsaleError):
    """The requested compute device is not usable (exit 1)."""

    exit_code = EXIT_FAILURE
