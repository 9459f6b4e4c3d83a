"""NiMARE Dataset JSON and NIMADS / NeuroStore studyset JSON."""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import math
from pathlib import Path

import pandas as pd

from csale_app.errors import InputError
from csale_app.io.read_common import (
    add_focus,
    coordinate,
    decode_text,
    id_list,
    make_frame,
    new_records,
    read_bytes,
    sample_size_value,
    short,
    space_or_error,
)

SAMPLE_SIZE_KEYS = ("sample_size", "sample_sizes", "n_subjects", "subjects")


class _Dict(dict):
    """A JSON object that remembers its line and the line of each key."""

    line = 1
    key_lines: dict = {}


class _List(list):
    """A JSON array that remembers its line and the line of each element."""

    line = 1
    lines: list = []


class _Duplicate(Exception):
    def __init__(self, key, first, second):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _Decoder(json.JSONDecoder):
    """Pure-Python scanner that records line numbers and refuses duplicate keys."""

    def __init__(self, text: str):
        super().__init__()
        self._breaks = [i for i, ch in enumerate(text) if ch == "\n"]
        self.parse_object = self._parse_object
        self.parse_array = self._parse_array
        self.memo = {}
        self.scan_once = json.scanner.py_make_scanner(self)

    def line_of(self, pos: int) -> int:
        return bisect.bisect_left(self._breaks, pos) + 1

    def _parse_object(self, s_and_end, strict, scan_once, object_hook, pairs_hook, memo=None):
        starts: list[int] = []

        def scan(s, idx):
            starts.append(idx)
            return scan_once(s, idx)

        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan, None, list, memo)
        result = _Dict()
        result.line = self.line_of(s_and_end[1] - 1)
        result.key_lines = {}
        for (key, value), pos in zip(pairs, starts):
            line = self.line_of(pos)
            if key in result:
                raise _Duplicate(key, result.key_lines[key], line)
            result[key] = value
            result.key_lines[key] = line
        return result, end

    def _parse_array(self, s_and_end, scan_once):
        starts: list[int] = []

        def scan(s, idx):
            starts.append(idx)
            return scan_once(s, idx)

        values, end = json.decoder.JSONArray(s_and_end, scan)
        result = _List(values)
        result.line = self.line_of(s_and_end[1] - 1)
        result.lines = [self.line_of(pos) for pos in starts]
        return result, end


def load_json(path: Path, text: str):
    """Parse JSON text keeping line numbers; any problem is an InputError."""
    if not text.strip():
        raise InputError(path, 1, "file is empty; expected a JSON studyset")
    decoder = _Decoder(text)
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as err:
        raise InputError(
            path, err.lineno, f"not valid JSON: {err.msg} (column {err.colno})"
        ) from None
    except _Duplicate as dup:
        raise InputError(
            path,
            dup.second,
            f"key {short(dup.key, 60)} appears twice in one object (lines {dup.first} and "
            f"{dup.second}); rename or merge one of them",
        ) from None
    except RecursionError:
        raise InputError(path, 1, "JSON is nested too deeply") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        msg = " ".join(str(err).split())[:120]
        if "digits" in msg:
            msg = "a number has too many digits"
        raise InputError(path, 1, f"not valid JSON: {msg}") from None


def _line(container, key=None) -> int:
    if key is not None and isinstance(container, _Dict):
        return container.key_lines.get(key, container.line)
    if key is not None and isinstance(container, _List) and isinstance(key, int):
        if 0 <= key < len(container.lines):
            return container.lines[key]
    return getattr(container, "line", 1)


def sample_size_of(path, meta, line, where) -> float:
    """First sample-size key in a metadata object; mean of a list; NaN if none."""
    if not isinstance(meta, dict):
        return math.nan
    for key in SAMPLE_SIZE_KEYS:
        value = meta.get(key)
        if value is None:
            continue
        at = _line(meta, key) if isinstance(meta, _Dict) else line
        if isinstance(value, list):
            sizes = [sample_size_value(v, path, at, f"{where}.metadata.{key}: ") for v in value]
            sizes = [v for v in sizes if not math.isnan(v)]
            if not sizes:
                continue
            return float(sum(sizes) / len(sizes))
        if isinstance(value, dict):
            raise InputError(path, at, f"{where}.metadata.{key}: expected a number, got an object")
        size = sample_size_value(value, path, at, f"{where}.metadata.{key}: ")
        if not math.isnan(size):
            return size
    return math.nan


def _tag(ident) -> str:
    """An id cut short for a JSON path in a message."""
    text = " ".join(str(ident).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _ident(value) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)) and str(value).strip():
        return str(value).strip()
    return None


def read_json_studyset(path: Path) -> pd.DataFrame:
    """Read a NiMARE Dataset JSON or a NIMADS / NeuroStore studyset JSON."""
    path = Path(path)
    data = load_json(path, decode_text(path, read_bytes(path)))
    if isinstance(data, dict) and data.get("format") == "nimare-studyset-parquet":
        raise InputError(
            path, 1, "this is the index of a parquet studyset folder; give the folder instead"
        )
    if isinstance(data, dict) and "studies" in data:
        return _read_nimads(path, data)
    if (
        isinstance(data, dict)
        and data
        and any(isinstance(v, dict) and "contrasts" in v for v in data.values())
    ):
        return _read_nimare(path, data)
    raise InputError(
        path,
        _line(data),
        "JSON is neither a NiMARE Dataset (study ids -> 'contrasts') nor a NIMADS studyset "
        "(object with a 'studies' list)",
    )


def _read_nimare(path: Path, data: dict) -> pd.DataFrame:
    records = new_records()
    no_coords: list[str] = []
    for sid, study in data.items():
        where = f"studies.{_tag(sid)}"
        if not isinstance(study, dict) or not isinstance(study.get("contrasts"), dict):
            raise InputError(
                path, _line(data, sid), f"{where}: expected an object with a 'contrasts' object"
            )
        contrasts = study["contrasts"]
        study_size = sample_size_of(path, study.get("metadata"), _line(study), where)
        for cid, con in contrasts.items():
            where = f"studies.{_tag(sid)}.contrasts.{_tag(cid)}"
            at = _line(contrasts, cid)
            if not isinstance(con, dict):
                raise InputError(path, at, f"{where}: expected an object")
            coords = con.get("coords")
            if coords is None:
                no_coords.append(f"{_tag(sid)}/{_tag(cid)}")
                continue
            if not isinstance(coords, dict):
                raise InputError(path, _line(con, "coords"), f"{where}.coords: expected an object")
            axes = []
            for axis in "xyz":
                values = coords.get(axis)
                if not isinstance(values, list):
                    raise InputError(
                        path,
                        _line(coords, axis) if axis in coords else _line(con, "coords"),
                        f"{where}.coords: '{axis}' must be a list of numbers",
                    )
                axes.append(values)
            lengths = {len(v) for v in axes}
            if len(lengths) != 1:
                raise InputError(
                    path,
                    _line(con, "coords"),
                    f"{where}.coords: x, y, z lists have different lengths "
                    f"({', '.join(str(len(v)) for v in axes)})",
                )
            if not axes[0]:
                no_coords.append(f"{_tag(sid)}/{_tag(cid)}")
                continue
            if "space" not in coords:
                raise InputError(
                    path,
                    _line(con, "coords"),
                    f'{where}.coords: no \'space\' (use "MNI" or "TAL")',
                )
            space = space_or_error(coords["space"], path, _line(coords, "space"), f"{where}: ")
            size = sample_size_of(path, con.get("metadata"), _line(con), where)
            if math.isnan(size):
                size = study_size
            for i in range(len(axes[0])):
                line = _line(axes[0], i)
                xyz = tuple(
                    coordinate(
                        axes[a][i], path, _line(axes[a], i), axis, f"{where}.coords.{axis}[{i}]: "
                    )
                    for a, axis in enumerate("xyz")
                )
                add_focus(records, sid, cid, xyz, space, size, line)
    return _finish(path, records, no_coords, "nimare-json")


def _read_nimads(path: Path, data: dict) -> pd.DataFrame:
    studies = data["studies"]
    if not isinstance(studies, list):
        raise InputError(path, _line(data, "studies"), "'studies' must be a list of studies")
    records = new_records()
    no_coords: list[str] = []
    seen_studies: dict[str, int] = {}
    for i, study in enumerate(studies):
        at = _line(studies, i)
        if not isinstance(study, dict):
            raise InputError(path, at, f"studies[{i}]: expected an object")
        sid = _ident(study.get("id"))
        if sid is None:
            raise InputError(path, at, f"studies[{i}]: missing or empty 'id'")
        if sid in seen_studies:
            raise InputError(
                path,
                at,
                f"study id {short(sid)} appears twice (lines {seen_studies[sid]} and {at}); "
                "merge or rename one of them",
            )
        seen_studies[sid] = at
        where = f"studies[{_tag(sid)}]"
        study_size = sample_size_of(path, study.get("metadata"), at, where)
        analyses = study.get("analyses", [])
        if analyses is None:
            analyses = []
        if not isinstance(analyses, list):
            raise InputError(path, _line(study, "analyses"), f"{where}.analyses must be a list")
        seen: dict[str, int] = {}
        for j, analysis in enumerate(analyses):
            at = _line(analyses, j)
            if not isinstance(analysis, dict):
                raise InputError(path, at, f"{where}.analyses[{j}]: expected an object")
            cid = _ident(analysis.get("id")) or _ident(analysis.get("name")) or str(j + 1)
            if cid in seen:
                raise InputError(
                    path,
                    at,
                    f"{where}: analysis {short(cid)} appears twice (lines {seen[cid]} and {at}); "
                    "rename one of them",
                )
            seen[cid] = at
            awhere = f"{where}.analyses[{_tag(cid)}]"
            points = analysis.get("points") or []
            if not isinstance(points, list):
                raise InputError(path, _line(analysis, "points"), f"{awhere}.points must be a list")
            if not points:
                no_coords.append(f"{_tag(sid)}/{_tag(cid)}")
                continue
            size = sample_size_of(path, analysis.get("metadata"), at, awhere)
            if math.isnan(size):
                size = study_size
            first_space = None
            for k, point in enumerate(points):
                pat = _line(points, k)
                pwhere = f"{awhere}.points[{k}]"
                if not isinstance(point, dict):
                    raise InputError(path, pat, f"{pwhere}: expected an object")
                xyz = point.get("coordinates")
                if not isinstance(xyz, list) or len(xyz) != 3:
                    found = len(xyz) if isinstance(xyz, list) else "none"
                    raise InputError(
                        path,
                        _line(point, "coordinates"),
                        f"{pwhere}: 'coordinates' must be a list of 3 numbers [x, y, z], "
                        f"found {found}",
                    )
                xyz = tuple(
                    coordinate(v, path, _line(xyz, a), axis, f"{pwhere}: ")
                    for a, (v, axis) in enumerate(zip(xyz, "xyz"))
                )
                raw_space = point.get("space", analysis.get("space"))
                if raw_space is None:
                    raise InputError(path, pat, f'{pwhere}: no \'space\' (use "MNI" or "TAL")')
                space = space_or_error(raw_space, path, _line(point, "space"), f"{pwhere}: ")
                if first_space is None:
                    first_space = (space, pat)
                elif space != first_space[0]:
                    raise InputError(
                        path,
                        pat,
                        f"{awhere} mixes spaces: {space} here, {first_space[0]} on line "
                        f"{first_space[1]}; use one space per analysis",
                    )
                add_focus(records, sid, cid, xyz, space, size, pat)
    return _finish(path, records, no_coords, "nimads-json")


def _finish(path, records, no_coords, fmt) -> pd.DataFrame:
    warnings = []
    if no_coords:
        warnings.append(
            f"{path}: dropped {len(no_coords)} experiment(s) without coordinates: "
            f"{id_list(no_coords)}"
        )
    if not records["x"]:
        raise InputError(path, 1, "no experiment with coordinates in this studyset")
    return make_frame(records, path, fmt, warnings)
