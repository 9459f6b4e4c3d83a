"""Sleuth / GingerALE text files (``// Reference=MNI``, ``// Subjects=N``, x y z rows)."""

from __future__ import annotations

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
    short,
    space_or_error,
    split_lines,
)

_REFERENCE = re.compile(r"reference\s*=\s*(.*)", re.IGNORECASE)
_SUBJECTS = re.compile(r"subjects\s*=\s*(.*)", re.IGNORECASE)
_SPLIT = re.compile(r"[\s,]+")
_ADD_REF = "add `// Reference=MNI` (or `// Reference=Talairach`) as the first line"


class _Block:
    """One header block (consecutive `//` lines) and the coordinate rows under it."""

    def __init__(self, line: int):
        self.line = line
        self.names: list[tuple[str, int]] = []
        self.subjects: float = math.nan
        self.subjects_line: int | None = None
        self.space: str | None = None
        self.coords: list[tuple[tuple[float, float, float], int]] = []

    def is_experiment(self) -> bool:
        return bool(self.names or self.subjects_line or self.coords)

    def label(self) -> str:
        return " / ".join(name for name, _ in self.names) or "(unnamed)"


def read_sleuth(path: Path) -> pd.DataFrame:
    """Read a Sleuth/GingerALE text file into the foci table (see readers.read_studyset)."""
    path = Path(path)
    text = decode_text(path, read_bytes(path))
    lines = split_lines(text)
    if not any(line.strip() for line in lines):
        raise InputError(path, 1, "file is empty; expected a Sleuth/GingerALE text file")
    if not any(
        line.strip().startswith("//") and _REFERENCE.fullmatch(line.strip()[2:].strip())
        for line in lines
    ):
        first = next(i for i, line in enumerate(lines, 1) if line.strip())
        raise InputError(path, first, f"no reference space in the file: {_ADD_REF}")

    records = new_records()
    seen: dict[tuple[str, str], int] = {}
    space: str | None = None
    block: _Block | None = None
    after_blank = True
    closed_by_blank = False
    n_experiments = 0

    def close(blk: _Block | None) -> None:
        nonlocal n_experiments
        if blk is None or not blk.is_experiment():
            return
        if not blk.coords:
            raise InputError(
                path,
                blk.names[0][1] if blk.names else blk.line,
                f"experiment {short(blk.label(), 60)} has no coordinate rows "
                "(add x y z rows under its header or remove the header)",
            )
        n_experiments += 1

    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            if block is not None and block.coords:
                close(block)
                block = None
                closed_by_blank = True
            after_blank = True
            continue
        if line.startswith("//"):
            body = line[2:].strip()
            if block is None or block.coords or after_blank:
                close(block)
                block = _Block(number)
            after_blank = False
            closed_by_blank = False
            ref = _REFERENCE.fullmatch(body)
            subj = _SUBJECTS.fullmatch(body)
            if ref:
                space = space_or_error(ref.group(1).strip(), path, number, "Reference line: ")
            elif subj:
                value = subj.group(1).strip()
                if block.subjects_line is not None:
                    raise InputError(
                        path,
                        number,
                        f"second Subjects line in one experiment header (first on line "
                        f"{block.subjects_line}); separate experiments with a blank line",
                    )
                if not re.fullmatch(r"\+?\d{1,9}", value, re.ASCII) or int(value) <= 0:
                    raise InputError(
                        path,
                        number,
                        f"Subjects value {short(value)} is not a positive integer "
                        "(write e.g. `// Subjects=12`)",
                    )
                block.subjects = float(int(value))
                block.subjects_line = number
            elif body:
                block.names.append((body, number))
            continue

        # a coordinate row
        if block is None or not block.names:
            if block is not None and block.subjects_line is not None:
                msg = (
                    "experiment header has no name line; add `// Author, Year: contrast` "
                    "above `// Subjects=`"
                )
            elif closed_by_blank:
                msg = (
                    "coordinate row after a blank line has no experiment header (blank lines "
                    "separate experiments); remove the blank line or add a header"
                )
            else:
                msg = (
                    "coordinate row before any experiment header; add "
                    "`// Author, Year: contrast` and `// Subjects=N` lines above it"
                )
            raise InputError(path, number, msg)
        after_blank = False
        if not block.coords:
            if space is None:
                raise InputError(
                    path,
                    block.names[0][1],
                    f"experiment {short(block.label(), 60)} comes before any "
                    f"`// Reference=` line; {_ADD_REF}",
                )
            block.space = space
            study_id = block.names[0][0]
            contrast_id = " / ".join(name for name, _ in block.names[1:])
            key = (study_id, contrast_id)
            if key in seen:
                raise InputError(
                    path,
                    block.names[0][1],
                    f"experiment {short(block.label(), 60)} appears twice (lines {seen[key]} "
                    f"and {block.names[0][1]}); rename or merge one of them",
                )
            seen[key] = block.names[0][1]
        tokens = [t for t in _SPLIT.split(line) if t]
        if len(tokens) != 3:
            raise InputError(
                path,
                number,
                f"expected 3 coordinates (x y z) on a row, found {len(tokens)}: {short(line, 50)}",
            )
        xyz = tuple(coordinate(t, path, number, axis) for t, axis in zip(tokens, "xyz"))
        block.coords.append((xyz, number))
        study_id = block.names[0][0]
        contrast_id = " / ".join(name for name, _ in block.names[1:])
        add_focus(records, study_id, contrast_id, xyz, block.space, block.subjects, number)
    close(block)
    if n_experiments == 0:
        raise InputError(
            path,
            1,
            "no experiments found; expected `// Author, Year: contrast`, `// Subjects=N` "
            "and x y z rows",
        )
    return make_frame(records, path, "sleuth", [])
