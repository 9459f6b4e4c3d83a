"""One experiment builder for every input: the vectorised ``build_experiments`` equals the
former per-experiment loop (tests/io/former_builder.py) on files, in-memory tables and a
database-like table; plain TSV/CSV tables are read column-wise and equal the row-by-row
reader, which still reads (and reports) everything else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csale_app.errors import InputError
from csale_app.io.experiments import build_experiments
from csale_app.io.read_common import decode_text, read_bytes
from csale_app.io.read_tables import plain_table, read_sidecar, read_table
from csale_app.io.readers import read_studyset
from csale_app.io.studyset import read_source
from tests.io.former_builder import loop_build_experiments, same_experiments


@pytest.fixture(scope="module")
def tables(demo_input, pain_json, tmp_path_factory):
    """Foci tables: the demo's files, NiMARE's pain JSON, and a Talairach CSV (sidecar
    space) with merged contrasts, a partly and a wholly outside experiment, a missing
    sample size and non-integer sizes."""
    d = tmp_path_factory.mktemp("builder")
    pd.DataFrame(
        {
            "study": ["t1"] * 3 + ["t2"] * 2 + ["t3"] * 2 + ["t4"] * 2,
            "contrast": ["a", "a", "b", "a", "a", "z", "z", "q", "r"],
            "x": [10.5, -20, 30, 300, 12, 500, 501, 4, -4],
            "y": [0, 10, -40, 0, 14, 0, 0, 8, 8],
            "z": [0, 20, 10, 0, 16, 0, 0, 2, 2],
            "n": [12, 12, 21.5, 9, 9, 5, 5, None, 15],
        }
    ).to_csv(d / "tal.csv", index=False)
    (d / "tal.json").write_text('{"space": "TAL"}')
    files = [demo_input / "nback.tsv", demo_input / "flanker.tsv", pain_json, d / "tal.csv"]
    frames = [read_studyset(f) for f in files]
    frames.append(read_source(frames[0].drop(columns=["source_file", "source_line"])).foci)
    return frames


@pytest.mark.parametrize("merge", [True, False])
@pytest.mark.parametrize("fwhm,default", [(None, 20.0), (9.0, None)])
def test_vectorised_builder_equals_the_former_loop(tables, brain, merge, fwhm, default):
    img, mask = brain
    for foci in tables:
        same_experiments(
            loop_build_experiments(foci, img.affine, mask.shape, merge, fwhm, default),
            build_experiments(foci, img.affine, mask.shape, merge, fwhm, default),
        )
    # a dropped experiment and a partly dropped one are reported the same way
    got = build_experiments(tables[3], img.affine, mask.shape, merge, fwhm, default)
    assert any("experiment 't3" in w and "dropped" in w for w in got.warnings)
    assert "t2" in got.study_ids and got.table["n_foci_dropped"].sum() == 3


def test_sample_size_errors_name_file_and_line_as_before(tables, brain):
    img, mask = brain
    foci = tables[3]
    with pytest.raises(InputError) as new:
        build_experiments(foci, img.affine, mask.shape)
    with pytest.raises(InputError) as old:
        loop_build_experiments(foci, img.affine, mask.shape)
    assert str(new.value) == str(old.value)
    assert str(new.value).endswith(
        "tal.csv:9: experiment 't4' has no positive sample size (got nan); give one, or "
        "set --default-sample-size N or --kernel-fwhm MM"
    )
    tiny = foci.assign(sample_size=foci["sample_size"].fillna(0.5))
    with pytest.raises(InputError, match=r"tal.csv:9: experiment 't4' has sample size 0.5"):
        build_experiments(tiny, img.affine, mask.shape)


def test_plain_tables_are_read_column_wise(demo_input, tmp_path):
    for path in (demo_input / "nback.tsv", demo_input / "flanker.tsv"):
        text, defaults = decode_text(path, read_bytes(path)), read_sidecar(path)
        fast = plain_table(path, text, "\t", "tsv", defaults)
        assert fast is not None  # the column-wise path did read it
        pd.testing.assert_frame_equal(fast, read_table(path, fast=False))
        assert fast.attrs == read_table(path, fast=False).attrs
    # not plain (quotes, a blank line): read row by row, same result as before
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('study_id,x,y,z,space,n\n"s, 1",1,2,3,MNI,10\n\ns2,4,5,6,TAL,12\n')
    assert plain_table(quoted, decode_text(quoted, read_bytes(quoted)), ",", "csv", {}) is None
    frame = read_table(quoted)
    assert frame["study_id"].tolist() == ["s, 1", "s2"]
    assert frame["source_line"].tolist() == [2, 4]
    # a problem found column-wise is reported by the row-by-row reader with its line
    bad = tmp_path / "bad.tsv"
    bad.write_text("study_id\tx\ty\tz\tspace\tn\ns1\t1\t2\t3\tMNI\t10\ns1\t1\t2\t3\tMNI\t11\n")
    with pytest.raises(InputError, match=r"bad.tsv:3: experiment 's1'/'1' has sample size 11"):
        read_table(bad)
    assert np.array_equal(read_table(demo_input / "nback.tsv")["source_line"][:2], [2, 3])
