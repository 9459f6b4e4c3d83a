"""Input readers: every format parses into the same foci table."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csale_app.errors import InputError, MissingInputError
from csale_app.io.readers import (
    COLUMNS,
    FORMATS,
    find_studysets,
    is_sidecar,
    normalize_space,
    read_parquet_studyset,
    read_studyset,
    study_label,
)

from tests.formats import nimare_json

nimare = pytest.importorskip("nimare")
RESOURCES = Path(os.path.dirname(nimare.__file__)) / "resources"
PARQUET = RESOURCES / "nback_vs_flanker_studyset_2026-07"


def check_schema(df: pd.DataFrame, fmt: str | None = None) -> None:
    assert list(df.columns) == COLUMNS
    for col in ("study_id", "contrast_id", "space", "source_file"):
        assert pd.api.types.is_string_dtype(df[col]), col
        assert df[col].map(type).eq(str).all(), col
    for col in ("x", "y", "z", "sample_size"):
        assert df[col].dtype == np.float64, col
    assert df["source_line"].dtype == np.int64
    assert (df["source_line"] >= 1).all()
    assert set(df["space"]) <= {"MNI", "TAL"}
    assert np.isfinite(df[["x", "y", "z"]].to_numpy()).all()
    assert isinstance(df.attrs["warnings"], list)
    assert df.attrs["format"] in FORMATS
    if fmt is not None:
        assert df.attrs["format"] == fmt


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def n_experiments(df) -> int:
    return df.groupby(["study_id", "contrast_id"]).ngroups


# --------------------------------------------------------------------------- Sleuth


SLEUTH = """// Reference=MNI
// Smith et al., 2001: 2-back > 0-back
// Subjects=12
10 20 30
-10\t-20\t-30.5

// Jones, 2005
// working memory
// load effect
// Subjects = 20
1,2,3
"""


def test_sleuth_basic(tmp_path):
    path = write(tmp_path / "wm.txt", SLEUTH)
    df = read_studyset(path)
    check_schema(df, "sleuth")
    assert len(df) == 3
    assert df["study_id"].tolist() == ["Smith et al., 2001: 2-back > 0-back"] * 2 + ["Jones, 2005"]
    assert df["contrast_id"].tolist() == ["", "", "working memory / load effect"]
    assert df["x"].tolist() == [10.0, -10.0, 1.0]
    assert df["z"].tolist() == [30.0, -30.5, 3.0]
    assert df["sample_size"].tolist() == [12.0, 12.0, 20.0]
    assert df["space"].tolist() == ["MNI"] * 3
    assert df["source_line"].tolist() == [4, 5, 11]
    assert df["source_file"].unique().tolist() == [str(path)]
    assert df.attrs["warnings"] == []


@pytest.mark.parametrize(
    ("ref", "space"),
    [
        ("MNI", "MNI"),
        ("mni", "MNI"),
        ("MNI152", "MNI"),
        ("Talairach", "TAL"),
        ("TAL", "TAL"),
        ("talairach", "TAL"),
    ],
)
def test_sleuth_reference_names(tmp_path, ref, space):
    path = write(tmp_path / "a.txt", f"//Reference={ref}\n// A\n// Subjects=5\n1 2 3\n")
    assert read_studyset(path)["space"].tolist() == [space]


def test_sleuth_crlf_bom_tabs_repeated_reference(tmp_path):
    text = (
        "\ufeff// Reference=Talairach\r\n// A, 2001\r\n// Subjects=10\r\n\t1\t2\t3\t\r\n"
        "\r\n// Reference=MNI\r\n// B, 2002\r\n// Subjects=11\r\n4, 5, 6\r\n"
        "\r\n// C, 2003\r\n// Subjects=12\r\n\r\n7 8 9\r\n"
    )
    df = read_studyset(write(tmp_path / "a.txt", text.encode("utf-8")))
    check_schema(df)
    assert df["space"].tolist() == ["TAL", "MNI", "MNI"]
    assert df["source_line"].tolist() == [4, 9, 14]
    assert df["sample_size"].tolist() == [10.0, 11.0, 12.0]


def test_sleuth_missing_subjects_is_nan(tmp_path):
    df = read_studyset(write(tmp_path / "a.txt", "// Reference=MNI\n// A\n1 2 3\n"))
    assert math.isnan(df["sample_size"].iloc[0])


def test_sleuth_experiments_without_blank_line(tmp_path):
    text = "// Reference=MNI\n// A\n// Subjects=5\n1 2 3\n// B\n// Subjects=6\n4 5 6\n"
    df = read_studyset(write(tmp_path / "a.txt", text))
    assert df["study_id"].tolist() == ["A", "B"]
    assert df["sample_size"].tolist() == [5.0, 6.0]


def test_sleuth_uppercase_suffix(tmp_path):
    df = read_studyset(write(tmp_path / "A.TXT", "// Reference=MNI\n// A\n1 2 3\n"))
    assert df.attrs["format"] == "sleuth"


# --------------------------------------------------------------------------- spaces


def test_space_aliases():
    for name in ["MNI", "mni152", "ICBM", "mni152_2mm", "MNI152NLin6Asym", "SPM", "FSL"]:
        assert normalize_space(name) == "MNI", name
    for name in ["TAL", "tal", "Talairach", "TALAIRACH"]:
        assert normalize_space(name) == "TAL", name
    for name in ["", "UNKNOWN", "OTHER", "Colin27", None, 3]:
        assert normalize_space(name) is None


# --------------------------------------------------------------------------- TSV / CSV


def test_tsv_canonical(tmp_path):
    text = (
        "study_id\tcontrast_id\tx\ty\tz\tspace\tsample_size\n"
        "s1\tc1\t1\t2\t3\tMNI\t10\n"
        "\n"
        "s1\tc2\t4\t5\t6\tTalairach\tn/a\n"
        "s2\tc1\t-1.5\t2e1\t3\tmni152\t7\n"
    )
    df = read_studyset(write(tmp_path / "t.tsv", text))
    check_schema(df, "tsv")
    assert df["space"].tolist() == ["MNI", "TAL", "MNI"]
    assert df["source_line"].tolist() == [2, 4, 5]
    assert df["y"].tolist() == [2.0, 5.0, 20.0]
    assert df["sample_size"].iloc[0] == 10.0
    assert math.isnan(df["sample_size"].iloc[1])


def test_csv_aliases_and_default_contrast(tmp_path):
    text = (
        "\ufeffPaper,X_mm,Y,Z,Coordinate_Space,N\n"
        '"Smith, 2001",1,2,3,MNI,12\nJones,4,5,6,TAL,\nJones,7,8,9,TAL,9\n'
    )
    df = read_studyset(write(tmp_path / "t.csv", text))
    check_schema(df, "csv")
    assert df["study_id"].tolist() == ["Smith, 2001", "Jones", "Jones"]
    assert df["contrast_id"].tolist() == ["1", "1", "1"]
    # the sample size of an experiment is filled from its other rows
    assert df["sample_size"].tolist() == [12.0, 9.0, 9.0]


@pytest.mark.parametrize(
    ("header", "canon"),
    [
        ("study", "study_id"),
        ("id", "study_id"),
        ("pmid", "study_id"),
        ("experiment", "contrast_id"),
        ("analysis", "contrast_id"),
        ("contrast_name", "contrast_id"),
        ("subjects", "sample_size"),
        ("n_subjects", "sample_size"),
        ("samplesize", "sample_size"),
        ("sample_sizes", "sample_size"),
        ("reference", "space"),
    ],
)
def test_tsv_alias(tmp_path, header, canon):
    cols = {"study_id": "s1", "contrast_id": "c1", "space": "MNI", "sample_size": "10"}
    names = {c: c for c in cols}
    names[canon] = header
    head = "\t".join(
        [
            names["study_id"],
            names["contrast_id"],
            "x",
            "y",
            "z",
            names["space"],
            names["sample_size"],
        ]
    )
    df = read_studyset(write(tmp_path / "t.tsv", f"{head}\ns1\tc1\t1\t2\t3\tMNI\t10\n"))
    assert df.loc[0, "study_id"] == "s1"
    assert df.loc[0, "contrast_id"] == "c1"
    assert df.loc[0, "sample_size"] == 10.0
    assert df.loc[0, "space"] == "MNI"


def test_tsv_prefers_study_id_over_id(tmp_path):
    text = "id\tstudy_id\tcontrast_id\tx\ty\tz\tspace\ns1-c1\ts1\tc1\t1\t2\t3\tMNI\n"
    df = read_studyset(write(tmp_path / "t.tsv", text))
    assert df.loc[0, "study_id"] == "s1"


def test_tsv_sidecar_defaults(tmp_path):
    table = write(
        tmp_path / "foo.tsv", "study_id\tx\ty\tz\tsample_size\ns1\t1\t2\t3\t\ns2\t4\t5\t6\t8\n"
    )
    side = write(
        tmp_path / "foo.json",
        json.dumps({"space": "Talairach", "sample_size": 20, "x": {"Description": "mm"}}),
    )
    assert is_sidecar(side)
    assert not is_sidecar(table)
    df = read_studyset(table)
    assert df["space"].tolist() == ["TAL", "TAL"]
    assert df["sample_size"].tolist() == [20.0, 8.0]
    with pytest.raises(InputError, match="sidecar"):
        read_studyset(side)


def test_tsv_quoted_multiline_field_line_numbers(tmp_path):
    text = 'study_id,x,y,z,space\n"multi\nline",1,2,3,MNI\ns2,4,5,nan,MNI\n'
    with pytest.raises(InputError, match=r"t\.csv:4: z coordinate") as info:
        read_studyset(write(tmp_path / "t.csv", text))
    assert info.value.line == 4


# --------------------------------------------------------------------------- JSON


def test_nimare_dataset_json_real():
    df = read_studyset(RESOURCES / "nidm_pain_dset.json")
    check_schema(df, "nimare-json")
    assert n_experiments(df) == 21
    raw = json.loads((RESOURCES / "nidm_pain_dset.json").read_text())
    n_foci = sum(len(c["coords"]["x"]) for s in raw.values() for c in s["contrasts"].values())
    assert len(df) == n_foci
    assert df.loc[0, "sample_size"] == 25.0
    assert (df["space"] == "MNI").all()
    assert df["source_line"].iloc[0] > 1


def test_nimads_json_real():
    df = read_studyset(RESOURCES / "nidm_pain_studyset.json")
    check_schema(df, "nimads-json")
    assert n_experiments(df) == 21
    other = read_studyset(RESOURCES / "nidm_pain_dset.json")
    cols = ["study_id", "contrast_id", "x", "y", "z", "space", "sample_size"]
    a = df[cols].sort_values(cols).reset_index(drop=True)
    b = other[cols].sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_nimare_json_sample_size_mean_and_study_fallback(tmp_path):
    data = {
        "s1": {
            "contrasts": {
                "1": {
                    "coords": {"space": "MNI", "x": [1], "y": [2], "z": [3]},
                    "metadata": {"sample_sizes": [10, 20]},
                }
            }
        },
        "s2": {
            "metadata": {"sample_sizes": 7},
            "contrasts": {
                "a": {"coords": {"space": "TAL", "x": [1, 2], "y": [2, 3], "z": [3, 4]}},
                "img": {"images": {"z": "x.nii.gz"}},
            },
        },
    }
    df = read_studyset(write(tmp_path / "d.json", json.dumps(data, indent=2)))
    check_schema(df, "nimare-json")
    assert df["sample_size"].tolist() == [15.0, 7.0, 7.0]
    assert df["space"].tolist() == ["MNI", "TAL", "TAL"]
    assert len(df.attrs["warnings"]) == 1 and "s2/img" in df.attrs["warnings"][0]


def test_nimads_sample_size_keys(tmp_path):
    def analysis(aid, meta):
        return {"id": aid, "metadata": meta, "points": [{"space": "MNI", "coordinates": [1, 2, 3]}]}

    data = {
        "id": "x",
        "studies": [
            {
                "id": "s1",
                "metadata": {"n_subjects": 30},
                "analyses": [
                    analysis("a", {"sample_size": 12}),
                    analysis("b", {"subjects": "14"}),
                    analysis("c", {}),
                    {"id": "d", "points": []},
                ],
            },
            {"id": "s2", "analyses": [analysis("a", None)]},
        ],
    }
    df = read_studyset(write(tmp_path / "n.json", json.dumps(data)))
    check_schema(df, "nimads-json")
    assert df["sample_size"].tolist()[:3] == [12.0, 14.0, 30.0]
    assert math.isnan(df["sample_size"].iloc[3])
    assert any("s1/d" in w for w in df.attrs["warnings"])


# --------------------------------------------------------------------------- parquet


def test_parquet_nback():
    df = read_parquet_studyset(PARQUET, where={"comparison_task": "n-back"}, unknown_space="mni")
    check_schema(df, "nimare-parquet")
    assert n_experiments(df) == 500
    assert len(df) == 6228
    dropped = read_studyset(PARQUET, where={"comparison_task": "n-back"})
    check_schema(dropped, "nimare-parquet")
    assert n_experiments(dropped) == 470
    assert any("dropped 30 experiment" in w for w in dropped.attrs["warnings"])
    assert dropped["sample_size"].notna().mean() > 0.9
    assert (dropped["sample_size"].dropna() > 0).all()


def test_parquet_where_list_and_no_match():
    both = read_parquet_studyset(PARQUET, where={"comparison_task": ["n-back", "flanker"]})
    everything = read_parquet_studyset(PARQUET)
    assert len(both) == len(everything)
    flanker = read_parquet_studyset(PARQUET, where={"comparison_task": "flanker"})
    assert n_experiments(flanker) + 470 == n_experiments(everything)
    with pytest.raises(InputError, match="no analysis matches"):
        read_parquet_studyset(PARQUET, where={"comparison_task": "stroop"})
    with pytest.raises(InputError, match="no metadata column"):
        read_parquet_studyset(PARQUET, where={"nope": 1})


def test_parquet_missing_table(tmp_path):
    folder = tmp_path / "ps"
    folder.mkdir()
    shutil.copy(PARQUET / "studyset.json", folder / "studyset.json")
    with pytest.raises(InputError, match="coordinates.parquet is missing"):
        read_studyset(folder)


# --------------------------------------------------------------------------- round trip


EXPERIMENTS = [
    ("Smith2001", "2back", 12, "MNI", [(10.0, -20.0, 30.5), (-4.0, 8.0, 52.0)]),
    ("Smith2001", "3back", 12, "MNI", [(0.0, 0.0, 0.0)]),
    ("Jones2005", "load", 20, "TAL", [(-44.25, 12.0, 6.0), (38.0, -60.0, 44.0), (1.0, 2.0, 3.0)]),
    ("Lee2010", "wm", 31, "MNI", [(22.0, -2.0, -14.0)]),
]


def _as_sleuth(exps) -> str:
    blocks = []
    for study, contrast, n, space, foci in exps:
        ref = "MNI" if space == "MNI" else "Talairach"
        rows = "\n".join("\t".join(f"{v:g}" for v in xyz) for xyz in foci)
        blocks.append(f"// Reference={ref}\n// {study}\n// {contrast}\n// Subjects={n}\n{rows}\n")
    return "\n".join(blocks)


def _as_tsv(exps) -> str:
    lines = ["study_id\tcontrast_id\tx\ty\tz\tspace\tsample_size"]
    for study, contrast, n, space, foci in exps:
        for x, y, z in foci:
            lines.append(f"{study}\t{contrast}\t{x!r}\t{y!r}\t{z!r}\t{space}\t{n}")
    return "\n".join(lines) + "\n"


def _as_nimads(exps) -> str:
    studies: dict = {}
    for study, contrast, n, space, foci in exps:
        studies.setdefault(study, {"id": study, "name": study, "metadata": {}, "analyses": []})
        studies[study]["analyses"].append(
            {
                "id": contrast,
                "name": contrast,
                "metadata": {"sample_sizes": [n]},
                "points": [{"space": space, "coordinates": list(xyz)} for xyz in foci],
            }
        )
    return json.dumps({"id": "ss", "name": "ss", "studies": list(studies.values())}, indent=2)


def test_round_trip_all_formats(tmp_path):
    frames = {
        "sleuth": read_studyset(write(tmp_path / "a.txt", _as_sleuth(EXPERIMENTS))),
        "tsv": read_studyset(write(tmp_path / "a.tsv", _as_tsv(EXPERIMENTS))),
        "csv": read_studyset(write(tmp_path / "b.csv", _as_tsv(EXPERIMENTS).replace("\t", ","))),
        "nimare": read_studyset(write(tmp_path / "c.json", nimare_json(EXPERIMENTS))),
        "nimads": read_studyset(write(tmp_path / "d.json", _as_nimads(EXPERIMENTS))),
    }
    cols = COLUMNS[:7]
    norm = {}
    for name, df in frames.items():
        check_schema(df)
        norm[name] = df[cols].sort_values(cols).reset_index(drop=True)
    assert len(norm["tsv"]) == 7
    for name, df in norm.items():
        pd.testing.assert_frame_equal(df, norm["tsv"], obj=name)


# --------------------------------------------------------------------------- labels, discovery


def test_study_label():
    assert study_label(Path("n-back_2mm.txt")) == "nback2mm"
    assert study_label(Path("/x/Pain Study.v2.json")) == "PainStudyv2"
    with pytest.raises(InputError):
        study_label(Path("---.tsv"))


def test_find_studysets(tmp_path):
    for name in [
        "b.txt",
        "a.tsv",
        "a.json",
        "c.csv",
        "d.json",
        ".hidden.txt",
        "dataset_description.json",
        "roi.nii.gz",
        "roi.json",
        "notes.md",
    ]:
        write(tmp_path / name, "x")
    (tmp_path / "database").mkdir()
    shutil.copy(PARQUET / "studyset.json", tmp_path / "database" / "studyset.json")
    (tmp_path / "ps_folder").mkdir()
    shutil.copy(PARQUET / "studyset.json", tmp_path / "ps_folder" / "studyset.json")
    (tmp_path / "plain_folder").mkdir()
    found = find_studysets(tmp_path)
    assert [p.name for p in found] == ["a.tsv", "b.txt", "c.csv", "d.json", "ps_folder"]
    write(tmp_path / "D.tsv", "x")
    with pytest.raises(InputError, match=r"D\.tsv|d\.json"):
        find_studysets(tmp_path)


def test_find_studysets_duplicate_label_names_both(tmp_path):
    write(tmp_path / "n-back.txt", "x")
    write(tmp_path / "nback.csv", "x")
    with pytest.raises(InputError) as info:
        find_studysets(tmp_path)
    assert "n-back.txt" in str(info.value) and "nback.csv" in str(info.value)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(MissingInputError):
        read_studyset(tmp_path / "nope.txt")
    with pytest.raises(MissingInputError):
        find_studysets(tmp_path / "nope")
    with pytest.raises(InputError, match="unsupported file type"):
        read_studyset(write(tmp_path / "a.xlsx", "x"))
    with pytest.raises(InputError, match="not a parquet studyset"):
        read_studyset(tmp_path)
