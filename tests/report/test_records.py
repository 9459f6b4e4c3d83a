"""Typed records (csale_app.records): round trips, the JSON a real run writes, refused
shapes, and the report reading a reused studyset's record as it reads a fresh one."""

import json
import re

import numpy as np
import pytest

from csale_app import names
from csale_app.records import RunRecord, StudysetSummary

SUMMARY = StudysetSummary(
    label="nback",
    source="/in/nback.tsv",
    n_experiments=np.int64(12),
    n_foci=90,
    analyses={
        "ale": {"n_clusters": 2, "ss_thresh": np.float64(0.0123), "null_seconds": 1.5},
        "macm": {
            "seed": "roi",
            "seeds": {"roi": {"n_selected": 7, "selection": "x", "ale": {"n_clusters": 1}}},
        },
        "mkdachi2": {"fdr_p_threshold": {"uniformity": -1.0}, "removed_overlap": None},
    },
    skipped={"macm-cluster2": "3 experiments selected < --min-experiments 5"},
    database={
        "source": "--database",
        "files": ["db.tsv"],
        "paths": ["/in/db.tsv"],
        "n_experiments": 300,
        "n_foci": 2000,
        "same_as_studyset": False,
    },
    roi={"label": "cerebellum", "n_voxels": 100, "dilation_mm": 6.0},
    term={"term": "pain", "threshold": 0.001, "feature_set": "abstract_tfidf", "n_studies": 3},
).with_runtime(12.3456)


def test_summary_round_trip():
    assert SUMMARY.runtime_s == 12.35
    assert isinstance(SUMMARY.n_experiments, int)  # plain values from the start
    assert type(SUMMARY.analyses["ale"]["ss_thresh"]) is float
    assert StudysetSummary.from_json(SUMMARY.to_json()) == SUMMARY
    text = json.dumps(SUMMARY.to_json())
    assert StudysetSummary.from_json(json.loads(text)) == SUMMARY
    assert list(SUMMARY.to_json()) == [
        "label",
        "source",
        "n_experiments",
        "n_foci",
        "analyses",
        "skipped",
        "database",
        "roi",
        "term",
        "runtime_s",
    ]
    bare = StudysetSummary("a", 1, 2)
    assert "term" not in bare.to_json() and "runtime_s" not in bare.to_json()
    assert StudysetSummary.from_json(json.loads(json.dumps(bare.to_json()))) == bare


def test_summary_reasons_and_ran():
    s = StudysetSummary(
        "a",
        1,
        2,
        analyses={"ale": {}, "macm": {"skipped": "no seed"}},
        skipped={"mkdachi2": "empty", "macm": "no seed"},
    )
    assert s.ran() == ["ale"]
    assert s.skip_reasons() == ["mkdachi2: empty", "macm: no seed"]


def test_run_record_round_trip():
    record = RunRecord(
        "abc123", {"analyses": ("ale", "csale"), "n_iters": 100, "roi": None}, SUMMARY, "1.2.3"
    )
    assert record.settings["analyses"] == ["ale", "csale"]  # as JSON gives it back
    assert RunRecord.from_json(record.to_json()) == record
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert list(record.to_json()) == ["digest", "settings", "summary", "version"]


@pytest.mark.parametrize(
    "bad, what",
    [
        ([], "expected a JSON object"),
        ({"n_experiments": 1, "n_foci": 1}, "label"),
        ({"label": "a", "n_experiments": "12", "n_foci": 1}, "n_experiments"),
        ({"label": "a", "n_experiments": True, "n_foci": 1}, "n_experiments"),
        ({"label": "a", "n_experiments": 1, "n_foci": 1, "skipped": ["macm"]}, "skipped"),
        ({"label": "a", "n_experiments": 1, "n_foci": 1, "analyses": ["ale"]}, "analyses"),
        ({"label": "a", "n_experiments": 1, "n_foci": 1, "runtime_s": "1 s"}, "runtime_s"),
        ({"label": "a", "n_experiments": 1, "n_foci": 1, "roi": "cerebellum"}, "roi"),
    ],
)
def test_summary_refuses_shapes_nothing_writes(bad, what):
    with pytest.raises(ValueError, match=what):
        StudysetSummary.from_json(bad)


def test_run_record_refuses_shapes_nothing_writes():
    good = RunRecord("d", {}, StudysetSummary("a", 1, 2), "1").to_json()
    for key in ("digest", "version", "settings", "summary"):
        with pytest.raises(ValueError, match=key if key != "summary" else "studyset summary"):
            RunRecord.from_json({k: v for k, v in good.items() if k != key})


def test_report_takes_typed_summaries(tmp_path):
    from csale_app.report import build_report

    with pytest.raises(TypeError, match="StudysetSummary"):
        build_report(tmp_path, {"studysets": [{"label": "a"}]})


def _page(out, label):
    text = (out / "report" / f"studyset-{label}.html").read_text(encoding="utf-8")
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d", "generated", text)


def test_record_of_a_real_run(demo_input, tmp_path):
    """The record a tiny run writes reads back into the same JSON, byte for byte; a second
    run reuses the studyset from that record and its report page is the same."""
    from csale_app.cli.run import main

    out = tmp_path / "out"
    args = [
        str(demo_input),
        str(out),
        "group",
        "--analyses",
        "ale",
        "--roi",
        "cerebellum",
        "--studyset-label",
        "flanker",
        "--n-iters",
        "40",
        "--voxel-thresh",
        "0.05",
        "--nprocs",
        "1",
        "--quiet",
    ]
    assert main(args) == 0
    path = out / "studyset-flanker" / ".csale_provenance.json"
    text = path.read_text()
    record = RunRecord.from_json(json.loads(text))
    assert json.dumps(record.to_json(), indent=2) + "\n" == text
    s = record.summary
    assert s.label == "flanker" and s.ran() == ["ale"] and s.runtime_s > 0
    assert s.roi["label"] == "cerebellum" and s.database is None  # ALE needs no database
    assert s.analyses["ale"]["n_experiments"] == s.n_experiments
    written = {
        names.MAP_PATTERN.search(f.name)["part"]
        for f in (out / "studyset-flanker").glob("*_meta-ale_*_statmap.nii.gz")
    }
    assert written == set(names.ALE_MAPS)  # the stats' keys are names.py's, as the files
    first = _page(out, "flanker")
    assert main(args) == 0
    assert path.read_text() == text  # reused, not rewritten
    notice = re.compile(r'<div class="notice">Results reused [^<]*</div>')
    again = _page(out, "flanker")
    assert notice.search(again) and not notice.search(first)
    assert notice.sub("", again) == first
