"""OUTPUT_DIR is a BIDS derivative dataset the official validator accepts (pinned
bids-validator-deno) and pybids indexes: several studysets with ALE, C-SALE with subsamples
and a MACM, reruns that reuse and a job-array run of one studyset; the dataset files
(dataset_description.json, README.md, .bidsignore, code/); an injected bad name fails.
Other kinds of run are validated where they already run: tests/cli/test_cli.py (ALE, C-SALE
with subsamples), test_macm.py (MACM seeds), test_api.py (to_bids), test_demo_report.py
(the demo's three folders)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from csale_app.cli.run import main
from csale_app import names

from tests.bids_check import assert_valid_bids, errors, misnamed, validate

AUTHORS = ["Ada Lovelace", "Santiago Ramon y Cajal"]


@pytest.fixture(scope="module")
def several(tmp_path_factory, pain_json) -> Path:
    """Two studysets, ALE + C-SALE (2 subsamples) + MACM in a sphere ROI; run, rerun (reuse)
    and a job-array run of one studyset into the same OUTPUT_DIR."""
    base = tmp_path_factory.mktemp("bids")
    inp = base / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    shutil.copy(pain_json, inp / "painb.json")
    out = base / "out"
    args = [
        str(inp),
        str(out),
        "group",
        "--roi-coords",
        "2,4,52",
        "--roi-radius",
        "20",
        "--subsamples",
        "2",
        "--macm-seed",
        "roi",
        "--n-iters",
        "30",
        "--voxel-thresh",
        "0.05",
        "--min-experiments",
        "5",
        "--nprocs",
        "1",
        "--quiet",
    ]
    assert main([*args, "--authors", *AUTHORS]) == 0
    assert main(args) == 0  # reuses everything; the authors are kept
    assert main([*args, "--studyset-label", "painb"]) == 0
    return out


def test_several_studysets_reruns_are_valid_bids(several):
    issues = assert_valid_bids(several, allowed_warnings=("SUBJECT_FOLDERS",))
    assert {i["code"] for i in issues} == {"SUBJECT_FOLDERS"}  # two authors: no warning
    for label in ("pain", "painb"):
        folder = several / f"studyset-{label}"
        assert list(folder.glob("*_meta-csale_stat-prob_desc-subsamplesextent_statmap.nii.gz"))
        assert list(folder.glob("macm-*/*_meta-ale_stat-z_statmap.nii.gz"))


def test_dataset_description_and_readme(several):
    desc = json.loads((several / names.DESCRIPTION).read_text())
    assert desc["DatasetType"] == "derivative" and desc["Authors"] == AUTHORS
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "csale_app" and gen["CodeURL"].startswith(("file://", "https://"))
    if gen["CodeURL"].startswith("file://"):  # the code that ran
        assert (Path(gen["CodeURL"][len("file://") :]) / "pipeline.py").is_file()
    urls = sorted(s["URL"] for s in desc["SourceDatasets"])
    inp = several.parent / "in"
    assert urls == sorted((inp / f).resolve().as_uri() for f in ("pain.json", "painb.json"))
    readme = (several / names.DATASET_README).read_text()
    for text in (
        "studyset-pain/",
        "studyset-painb/",
        "SUBJECT_FOLDERS",
        "TOO_FEW_AUTHORS",
        names.PYBIDS_CONFIG,
        "Ada Lovelace",
    ):
        assert text in readme, text
    ignore = [
        ln
        for ln in (several / ".bidsignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert ignore == [p for _, pats in names.BIDSIGNORE for p in pats]
    assert not (several / names.LEGACY_PYBIDS_CONFIG).exists()
    assert (several / names.PYBIDS_CONFIG).is_file()


def test_injected_invalid_names_fail(several, tmp_path):
    """The checks cannot pass vacuously: a misnamed file at the top level fails the
    validator, one inside a studyset folder (skipped by the validator) the naming rule."""
    bad = tmp_path / "out"
    shutil.copytree(several, bad, ignore=shutil.ignore_patterns(".csale_work"))
    assert not errors(validate(bad))
    (bad / "pain_ale_zmap.nii.gz").write_bytes(
        (several / "studyset-pain" / "studyset-pain_roi-spheres1r20_mask.nii.gz").read_bytes()
    )
    assert ("NOT_INCLUDED", "/pain_ale_zmap.nii.gz") in errors(validate(bad))
    (bad / "studyset-pain" / "pain zmap.nii.gz").write_text("")
    (bad / "studyset-pain" / "studyset-pain_thing-x_statmap.nii.gz").write_text("")
    assert misnamed(bad) == [
        "studyset-pain/pain zmap.nii.gz",
        "studyset-pain/studyset-pain_thing-x_statmap.nii.gz",
    ]


def _entities(name: str) -> dict:
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    ents = dict(p.split("-", 1) for p in parts[:-1])
    ents["suffix"] = parts[-1]
    return ents


def test_pybids_indexes_every_map_and_table(several):
    from bids import BIDSLayout

    layout = BIDSLayout(several, validate=False, config=[str(several / names.PYBIDS_CONFIG)])
    files = [
        p
        for p in several.glob("studyset-*/**/*")
        if p.is_file()
        and p.name.endswith((".nii.gz", ".tsv"))
        and not any(part.startswith(".") for part in p.relative_to(several).parts)
    ]
    assert len(files) > 60
    indexed = {f.path: f.get_entities() for f in layout.get()}
    for p in files:
        got = indexed[str(p)]
        want = _entities(p.name)
        for key, value in want.items():
            assert str(got.get(key)) == value, (p.name, key, got.get(key))
    # queries by studyset, meta and stat return exactly the files named so
    for label in ("pain", "painb"):
        for meta in ("ale", "csale"):
            for stat in ("z", "logp", "prob"):
                got = sorted(
                    f.path
                    for f in layout.get(studyset=label, meta=meta, stat=stat, extension=".nii.gz")
                )
                want = sorted(
                    str(p)
                    for p in files
                    if p.name.endswith(".nii.gz")
                    and re.search(rf"^studyset-{label}_.*_meta-{meta}_stat-{stat}_", p.name)
                )
                assert got == want and (got or stat == "prob" and meta == "ale")
        tables = layout.get(studyset=label, suffix="clusters", extension=".tsv")
        assert {f.get_entities()["meta"] for f in tables} == {"ale", "csale"}
        macm = layout.get(
            studyset=label,
            macm="spheres1r20",
            meta="ale",
            stat="z",
            desc="thresholded",
            extension=".nii.gz",
        )
        assert len(macm) == 1 and "/macm-spheres1r20/" in macm[0].path


def test_dataset_files_alone_are_valid_and_replace_the_old_config(tmp_path):
    """What a run writes first (also all an interrupted run leaves) is a valid dataset, and
    the top-level pybids config of earlier versions is removed."""
    from csale_app.outputs.bids import write_dataset_description

    (tmp_path / names.LEGACY_PYBIDS_CONFIG).write_text("{}")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "csale_app_20261204-000000_1.log").write_text("log\n")
    write_dataset_description(tmp_path)
    assert not (tmp_path / names.LEGACY_PYBIDS_CONFIG).exists()
    assert "No studyset has finished" in (tmp_path / names.DATASET_README).read_text()
    desc = json.loads((tmp_path / names.DESCRIPTION).read_text())
    assert "Authors" not in desc and "SourceDatasets" not in desc
    assert not errors(validate(tmp_path))
