"""Fuzzing the readers: any text gives the foci table or an InputError, nothing else."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csale_app.errors import InputError
from csale_app.io.readers import COLUMNS, FORMATS, read_studyset

SLEUTH = (
    "// Reference=MNI\n// Smith et al., 2001: 2-back\n// Subjects=12\n10 20 30\n-10\t-20\t-30.5\n"
    "\n// Jones, 2005\n// load\n// Subjects = 20\n1,2,3\n4 5 6\n"
    "\n// Reference=Talairach\n// Lee 2010\n// Subjects=8\n0 0 0\n"
)
TSV = (
    "study_id\tcontrast_id\tx\ty\tz\tspace\tsample_size\n"
    "s1\tc1\t1\t2\t3\tMNI\t10\ns1\tc1\t-4.5\t5\t6\tMNI\t10\n"
    's2\t1\t7\t8\t9\tTAL\tn/a\n"s 3"\tc\t0\t0\t1e1\tmni152\t5\n'
)
NIMARE = json.dumps(
    {
        "s1": {
            "contrasts": {
                "1": {
                    "coords": {"space": "MNI", "x": [1, 2], "y": [3, 4], "z": [5, 6]},
                    "metadata": {"sample_sizes": [10, 12]},
                }
            }
        },
        "s2": {"contrasts": {"a": {"coords": {"space": "TAL", "x": [7], "y": [8], "z": [9]}}}},
    },
    indent=1,
)
NIMADS = json.dumps(
    {
        "id": "x",
        "studies": [
            {
                "id": "s1",
                "metadata": {"n_subjects": 9},
                "analyses": [
                    {
                        "id": "a",
                        "points": [
                            {"space": "MNI", "coordinates": [1, 2, 3]},
                            {"space": "MNI", "coordinates": [4.5, 5, 6]},
                        ],
                    }
                ],
            }
        ],
    },
    indent=1,
)
VALID = {".txt": SLEUTH, ".tsv": TSV, ".csv": TSV.replace("\t", ","), ".json": NIMARE}

ALPHABET = list("0123456789 \t,\n\r/=.-+eE\"'nNaAiIfF;:") + [
    "\x00",
    "\ufeff",
    "\u00e9",
    "\u2028",
    "\x85",
    "\ud7ff",
    "NaN",
    "inf",
    "//",
    "// Subjects=",
    "// Reference=",
    "Talairach",
    "MNI",
    "{",
    "}",
    "[",
    "]",
    '"x":',
    "null",
    "1e999",
    "9" * 400,
    "9" * 5000,
    "[" * 2000,
    "-0",
    "0x10",
    "\u0661\u0662",
]


def check(path: Path) -> None:
    try:
        df = read_studyset(path)
    except InputError as err:
        text = str(err)
        assert text and "\n" not in text.replace(str(path), "")
        return
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == COLUMNS
    assert len(df) > 0
    for col in ("x", "y", "z", "sample_size"):
        assert df[col].dtype == np.float64
    assert np.isfinite(df[["x", "y", "z"]].to_numpy()).all()
    assert df["source_line"].dtype == np.int64 and (df["source_line"] >= 1).all()
    assert set(df["space"]) <= {"MNI", "TAL"}
    assert df["study_id"].map(type).eq(str).all()
    assert df["contrast_id"].map(type).eq(str).all()
    ss = df["sample_size"].dropna()
    assert (ss > 0).all()
    assert df.attrs["format"] in FORMATS
    assert isinstance(df.attrs["warnings"], list)


@st.composite
def mutated(draw, base: str) -> str:
    text = base
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(
                ["replace", "insert", "delete", "dup_line", "drop_line", "swap_lines", "truncate"]
            )
        )
        if op in ("replace", "insert", "delete", "truncate") and text:
            i = draw(st.integers(0, len(text) - 1))
            piece = draw(st.one_of(st.sampled_from(ALPHABET), st.text(max_size=3)))
            if op == "replace":
                text = text[:i] + piece + text[i + 1 :]
            elif op == "insert":
                text = text[:i] + piece + text[i:]
            elif op == "delete":
                j = draw(st.integers(i, min(len(text), i + 8)))
                text = text[:i] + text[j:]
            else:
                text = text[:i]
        else:
            lines = text.split("\n")
            if not lines:
                continue
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "drop_line":
                del lines[i]
            elif op == "swap_lines":
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def _run(suffix: str, content: bytes, sidecar: bytes | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(content)
        if sidecar is not None:
            (Path(tmp) / "fuzz.json").write_bytes(sidecar)
        check(path)


def test_valid_examples_parse():
    for suffix, text in VALID.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"ok{suffix}"
            path.write_text(text, encoding="utf-8")
            df = read_studyset(path)
            assert len(df) >= 3


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    data=st.data(),
    suffix=st.sampled_from([".txt", ".tsv", ".csv"]),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_mutated_sleuth_and_tables(data, suffix, crlf, bom):
    text = data.draw(mutated(VALID[suffix]))
    if crlf:
        text = text.replace("\n", "\r\n")
    raw = text.encode("utf-8", errors="surrogatepass")
    _run(suffix, (b"\xef\xbb\xbf" if bom else b"") + raw)


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data(), base=st.sampled_from([NIMARE, NIMADS]))
def test_mutated_json(data, base):
    _run(".json", data.draw(mutated(base)).encode("utf-8", errors="surrogatepass"))


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    suffix=st.sampled_from([".txt", ".tsv", ".csv", ".json"]),
    content=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
)
def test_random_bytes_and_text(suffix, content):
    _run(suffix, content)


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_mutated_sidecar(data):
    table = b"study_id\tx\ty\tz\ns1\t1\t2\t3\n"
    side = data.draw(mutated('{\n "space": "MNI",\n "sample_size": 20,\n "contrast_id": "c"\n}\n'))
    _run(".tsv", table, side.encode("utf-8", errors="surrogatepass"))
