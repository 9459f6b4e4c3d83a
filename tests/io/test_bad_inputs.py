"""Every malformed file in tests/data/bad/ is refused with an InputError naming file:line.

tests/data/bad/EXPECTED.tsv lists ``file, line, message_regex``. A table whose name starts
with ``tsv_sidecar_`` comes with a ``<stem>.json`` sidecar beside it, and its error names the
sidecar file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from csale_app.errors import EXIT_DATA, InputError
from csale_app.io.readers import is_sidecar, read_studyset

BAD = Path(__file__).parents[1] / "data" / "bad"


def _expected():
    with open(BAD / "EXPECTED.tsv", newline="", encoding="utf-8") as handle:
        return [
            (row["file"], int(row["line"]), row["message_regex"])
            for row in csv.DictReader(handle, delimiter="\t")
        ]


EXPECTED = _expected()


@pytest.mark.parametrize(("name", "line", "regex"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_bad_input_is_refused(name, line, regex):
    path = BAD / name
    with pytest.raises(InputError, match=regex) as info:
        read_studyset(path)
    err = info.value
    text = str(err)
    sidecar = path.with_suffix(".json")
    named = sidecar.name if sidecar.is_file() and is_sidecar(sidecar) else name
    assert f"{named}:{line}: " in text
    assert err.line == line
    assert "\n" not in text and "\r" not in text
    assert err.one_line() == text
    assert err.exit_code == EXIT_DATA


def test_every_bad_file_is_listed():
    listed = {name for name, _, _ in EXPECTED}
    files = {
        p.name
        for p in BAD.iterdir()
        if p.name != "EXPECTED.tsv" and not (p.suffix == ".json" and is_sidecar(p))
    }
    assert files == listed
    assert len(listed) >= 30


def test_every_rule_has_a_case():
    names = " ".join(name for name, _, _ in EXPECTED)
    for token in [
        "sleuth_duplicate_experiment",
        "sleuth_two_coordinates",
        "sleuth_nan_coordinate",
        "sleuth_non_numeric_coordinate",
        "sleuth_coordinates_before_header",
        "sleuth_subjects_zero",
        "sleuth_unknown_reference",
        "sleuth_no_reference",
        "sleuth_experiment_without_coordinates",
        "sleuth_empty",
        "sleuth_crlf_bad_row",
        "sleuth_latin1_bytes",
        "csv_missing_x_column",
        "tsv_nan_coordinate",
        "tsv_non_numeric_sample_size",
        "tsv_unknown_space",
        "tsv_mixed_spaces",
        "tsv_empty",
        "json_truncated",
        "nimads_point_two_coords",
    ]:
        assert token in names
