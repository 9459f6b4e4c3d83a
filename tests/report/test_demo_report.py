"""The demo (n-back and flanker, cerebellum, ALE + C-SALE + MACM; n-back against flanker) at
reduced iterations: every report page (entry page, one per studyset) is an offline file under
5 MB; a studyset page's tables fit 1,280 px in
headless Chromium without console errors; every TSV has a sidecar; the summary counts equal
the tables; every "at the peak" view is cut at a peak of its cluster table."""

import html as htmllib
import json
import re

import pandas as pd
import pytest

from csale_app.cli.run import main
from csale_app.io.demo_data import write_demo_input

from tests import chromium, report_pages


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    write_demo_input(base / "in")
    out, vs = base / "out", base / "out_vs"
    # the demo's commands with few permutations; the MACM is seeded by the ROI here because
    # C-SALE clusters are not guaranteed at 40 permutations
    common = ["--roi", "cerebellum", "--n-iters", "40", "--voxel-thresh", "0.05", "--quiet"]
    assert main([str(base / "in"), str(out), "group", "--macm-seed", "roi", *common]) == 0
    assert (
        main(
            [
                str(base / "in"),
                str(vs),
                "group",
                "--analyses",
                "csale",
                "--studyset-label",
                "nback",
                "--database",
                str(base / "in" / "flanker.tsv"),
                *common,
            ]
        )
        == 0
    )
    return {"all": out, "nback_vs_flanker": vs}


def test_demo_runs_all_three_analyses(demo):
    out = demo["all"]
    for label in ("nback", "flanker"):
        d = out / f"studyset-{label}"
        assert list(d.glob("*_roi-cerebellum_mask.nii.gz"))
        for meta in ("ale", "csale"):
            assert list(d.glob(f"*meta-{meta}_stat-z_desc-thresholded_statmap.nii.gz"))
    macm = list((out / "studyset-nback").glob("macm-*"))
    assert macm, "MACM seeded by the cerebellum"
    assert list(macm[0].glob("*_experiments.tsv"))


@pytest.mark.parametrize("run", ["all", "nback_vs_flanker"])
def test_demo_report_is_offline_and_small(demo, run):
    for report in report_pages.pages(demo[run]):  # entry page, one page per studyset
        text = report.read_text(encoding="utf-8")
        assert report.stat().st_size < 5 * 1024 * 1024, report
        assert not re.search(r"https?://", text)
        for page in re.findall(r'srcdoc="([^"]*)"', text):  # viewers: inline script only
            assert not re.search(r"https?:|src=\"//", htmllib.unescape(page))


def test_every_tsv_has_a_sidecar(demo):
    tsvs = [p for out in demo.values() for p in out.rglob("*.tsv")]
    assert len(tsvs) > 20
    for p in tsvs:
        side = p.with_suffix(".json")
        assert side.exists(), p.name
        cols = pd.read_csv(p, sep="\t", nrows=0).columns
        described = json.loads(side.read_text())
        assert all(c in described for c in cols), (p.name, set(cols) - set(described))


@pytest.mark.parametrize("run", ["all", "nback_vs_flanker"])
def test_summary_counts_equal_table_rows(demo, run):
    out = demo[run]
    text = (out / "report.html").read_text(encoding="utf-8")
    for folder in sorted(out.glob("studyset-*")):
        label = folder.name.split("-", 1)[1]
        table = pd.read_csv(folder / f"{folder.name}_desc-experiments_table.tsv", sep="\t")
        kept = int(table["status"].eq("kept").sum())
        prov = json.loads((folder / ".csale_provenance.json").read_text())
        assert prov["summary"]["n_experiments"] == kept
        sec = report_pages.page(out, label)
        shown = re.search(r"<td>Experiments analysed</td><td>(\d+)", sec).group(1)
        rows = re.search(r"<summary>Experiments analysed \((\d+) rows\)</summary>", sec).group(1)
        summary_row = re.search(
            rf"<td[^>]*><a [^>]*>{label}</a></td><td[^>]*>(\d+)</td>", text
        ).group(1)
        assert int(shown) == int(rows) == int(summary_row) == kept
        if kept < len(table):
            rest = re.search(r"<summary>Experiments not analysed \((\d+) rows\)</summary>", sec)
            assert int(rest.group(1)) == len(table) - kept


def test_peak_views_cut_at_listed_peaks(demo):
    n = 0
    for out in demo.values():
        text = report_pages.text(out)
        for peak, table in re.findall(r'<figure data-peak="([^"]+)" data-table="([^"]+)"', text):
            (path,) = list(out.rglob(table))
            df = pd.read_csv(path, sep="\t")
            peaks = pd.read_csv(path.with_name(path.name.replace("_clusters", "_peaks")), sep="\t")
            listed = {
                ",".join(f"{v:g}" for v in r)
                for r in df[["peak_x", "peak_y", "peak_z"]].itertuples(index=False)
            }
            assert peak in listed
            assert peak in {
                ",".join(f"{v:g}" for v in r)
                for r in peaks[["x", "y", "z"]].itertuples(index=False)
            }
            n += 1
    assert n >= 2


@pytest.mark.parametrize("run", ["all", "nback_vs_flanker"])
def test_demo_report_fits_1280_in_chromium(demo, run, tmp_path):
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    res, console = chromium.layout(report_pages.pages(demo[run])[1], tmp_path)
    assert res["page"] <= res["viewport"], "the page scrolls sideways"
    assert len(res["tables"]) >= 6
    assert not chromium.overflowing(res), chromium.overflowing(res)
    assert not console and not res["errors"], (console, res["errors"])
    assert all(f.get("canvas") and not f.get("errors") for f in res["frames"]), res["frames"]


def test_demo_output_folders_are_valid_bids(demo, tmp_path):
    """The demo's three OUTPUT_DIRs (scripts/demo.sh) pass the official validator: the two
    above and the MACM seeded by the n-back C-SALE clusters (with few permutations they may
    be empty; then, as an equally valid seed file, the n-back ALE clusters)."""
    import shutil

    import nibabel as nib

    from tests.bids_check import assert_valid_bids

    assert_valid_bids(demo["all"])
    assert_valid_bids(demo["nback_vs_flanker"])
    folder = demo["nback_vs_flanker"] / "studyset-nback"
    seed = next(folder.glob("*_meta-csale_stat-z_desc-thresholded_statmap.nii.gz"))
    if not nib.load(seed).get_fdata().any():
        seed = next(
            (demo["all"] / "studyset-nback").glob(
                "*_meta-ale_stat-z_desc-thresholded_statmap.nii.gz"
            )
        )
    assert nib.load(seed).get_fdata().any()
    seed_file = tmp_path / "seed" / "nback_csale_clusters.nii.gz"
    seed_file.parent.mkdir()
    shutil.copy(seed, seed_file)
    inp = demo["all"].parent / "in"
    out = tmp_path / "demo_output_macm"
    assert (
        main(
            [
                str(inp),
                str(out),
                "group",
                "--analyses",
                "macm",
                "--macm-seed",
                "roi",
                "--roi",
                str(seed_file),
                "--studyset-label",
                "nback",
                "--n-iters",
                "40",
                "--voxel-thresh",
                "0.05",
                "--quiet",
            ]
        )
        == 0
    )
    assert list((out / "studyset-nback").glob("macm-*"))
    assert_valid_bids(out)
