"""The HTML report: self-contained, escaped, small enough, and renders in headless Chromium."""

import html as htmllib
import json
import logging
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csale_app.records import StudysetSummary
from csale_app.report import build_report

from tests import chromium, report_pages

SPACE = "space-MNI152NLin6Asym_res-2"
EVIL = "<script>alert(1)</script>"


def _template():
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    return img.affine, np.asanyarray(img.dataobj) > 0


def _ijk(affine, xyz):
    inv = np.linalg.inv(affine)
    return np.round(inv[:3, :3] @ np.asarray(xyz, float) + inv[:3, 3]).astype(int)


def _blob(shape, affine, centre, radius_mm, peak):
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    d = np.linalg.norm(xyz - np.asarray(centre, float), axis=1).reshape(shape)
    return np.where(d <= radius_mm, peak - d / radius_mm, 0.0)


def _save(path, data, affine, sidecar=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


def _analysis(folder, prefix, meta, affine, brain, centres, roi=None, baserate=False):
    shape = brain.shape
    z = sum(_blob(shape, affine, c, 8, 5.0) for c in centres) * brain
    if roi is not None:
        z = z * roi
    side = {
        "Method": f"{meta.upper()} with Monte Carlo FWE",
        "NullIterations": 100,
        "ClusterFormingThreshold": {"p": 0.001, "ale": 0.0123},
        "Label": EVIL,
    }
    stem = f"{prefix}_{SPACE}_meta-{meta}"
    _save(folder / f"{stem}_stat-z_desc-thresholded_statmap.nii.gz", z, affine, side)
    _save(folder / f"{stem}_stat-ale_statmap.nii.gz", z / 200.0, affine, side)
    _save(folder / f"{stem}_stat-z_statmap.nii.gz", z, affine, side)
    _save(folder / f"{stem}_stat-logp_statmap.nii.gz", np.minimum(z, 2.0), affine, side)
    if baserate:
        br = brain * (1.0 if roi is None else roi) * np.linspace(0, 1, shape[2])[None, None, :]
        _save(folder / f"{stem}_stat-prob_desc-baserate_statmap.nii.gz", br / br.sum(), affine)
        _save(
            folder / f"{stem}_stat-prob_desc-subsamplesextent_statmap.nii.gz",
            (z > 0) * 0.6,
            affine,
            {"Subsamples": 5},
        )
    rows = []
    for i, c in enumerate(centres, start=1):
        rows.append(
            {
                "cluster_id": i,
                "size_voxels": 250 - i,
                "size_mm3": 8.0 * (250 - i),
                "peak_x": c[0],
                "peak_y": c[1],
                "peak_z": c[2],
                "peak_ale": 0.025,
                "centre_x": c[0],
                "centre_y": c[1],
                "centre_z": c[2],
                "p_fwe_size": 0.001,
                "peak_label_ho_cortical": "unlabelled",
                "composition": "60% Left Cerebellum VI; 40% unlabelled",
            }
        )
    pd.DataFrame(rows).to_csv(folder / f"{stem}_clusters.tsv", sep="\t", index=False)
    peaks = pd.DataFrame(
        [
            {
                "cluster_id": r["cluster_id"],
                "peak_id": str(r["cluster_id"]),
                "x": r["peak_x"],
                "y": r["peak_y"],
                "z": r["peak_z"],
                "value": 0.025,
                "label_suit_cerebellar": "Left Cerebellum VI",
            }
            for r in rows
        ]
    )
    peaks.to_csv(folder / f"{stem}_peaks.tsv", sep="\t", index=False)
    contrib = pd.DataFrame(
        {
            "cluster_id": [1, 1, 2],
            "experiment_id": [EVIL, "Smith2010", EVIL],
            "jackknife": [0.4, 0.1, 0.0],
            "n_foci_in_cluster": [2, 1, 0],
        }
    )
    contrib.to_csv(folder / f"{stem}_contributions.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"max_ale": rng.gamma(5, 0.003, 200), "max_cluster_size": rng.poisson(60, 200)}
    ).to_csv(folder / f"{stem}_desc-null_values.tsv", sep="\t", index=False)


def _studyset(out, label, affine, brain, with_roi, full=True, macm=True):
    folder = out / f"studyset-{label}"
    prefix = f"studyset-{label}"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "experiment_id": [EVIL, "Smith2010", "Doe2012"],
            "study_id": [EVIL, "Smith2010", "Doe2012"],
            "sample_size": [12, 20, 15],
            "n_foci": [3, 5, 4],
            "space": ["MNI", "TAL", "MNI"],
            "status": ["kept", "kept", "dropped: no foci inside the template"],
        }
    ).to_csv(folder / f"{prefix}_desc-experiments_table.tsv", sep="\t", index=False)
    pd.DataFrame(
        {
            "study_id": [EVIL, EVIL, "Smith2010", "Doe2012"],
            "experiment_id": [EVIL, EVIL, "Smith2010", "Doe2012"],
            "x_mni": [-30.0, 40, 28, -40],
            "y_mni": [-60.0, 10, -64, -20],
            "z_mni": [-30.0, 30, -40, 50],
            "i": [60, 25, 31, 65],
            "j": [33, 68, 31, 53],
            "k": [21, 51, 16, 61],
            "in_template": [True, True, True, True],
        }
    ).to_csv(folder / f"{prefix}_desc-input_foci.tsv", sep="\t", index=False)
    roi = None
    if with_roi:
        roi = np.zeros(brain.shape, bool)
        lo, hi = _ijk(affine, (-50, -90, -60)), _ijk(affine, (50, -35, -15))
        roi[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
        roi &= brain
        _save(folder / f"{prefix}_roi-cerebellum_mask.nii.gz", roi, affine)
    cents = [(-30, -60, -30), (28, -64, -40)] if with_roi else [(-40, -20, 50), (38, 4, 2)]
    _analysis(folder, prefix, "ale", affine, brain, cents, roi)
    if not full:
        return
    _analysis(folder, prefix, "csale", affine, brain, cents[:1], roi, baserate=True)
    if not macm:
        return
    mf = folder / "macm-clusters"
    mp = f"{prefix}_macm-clusters"
    seed = _blob(brain.shape, affine, cents[0], 8, 1.0) > 0
    _save(mf / f"{mp}_mask.nii.gz", seed, affine)
    pd.DataFrame({"experiment_id": [EVIL, "Smith2010"], "n_foci_in_seed": [1, 2]}).to_csv(
        mf / f"{mp}_experiments.tsv", sep="\t", index=False
    )
    for meta in ("ale", "csale"):
        _analysis(
            mf,
            mp,
            meta,
            affine,
            brain,
            [(-40, -20, 50), (2, 4, 52), (-30, -60, -30)],
            baserate=meta == "csale",
        )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    affine, brain = _template()
    _studyset(out, "cerebellum", affine, brain, with_roi=True)
    _studyset(out, "wholebrain", affine, brain, with_roi=False, macm=False)
    context = {
        "version": "0.1.0",
        "command_line": ["csale-app", "in", "out", "group", EVIL],
        "settings": {
            "n_iters": 100,
            "voxel_thresh": 0.001,
            "cluster_alpha": 0.05,
            "analyses": ["ale", "csale", "macm"],
            "roi": "cerebellum",
            "csale_null": "probabilistic",
            "random_seed": 7,
            "min_cluster_size": 50,
        },
        "device": "CPU (numba, 2 threads)",
        "runtime_s": 125.3,
        "warnings": [f"experiment '{EVIL}' has few foci"],
        "studysets": [
            StudysetSummary.from_json(s)
            for s in [
                {
                    "label": "cerebellum",
                    "n_experiments": 2,
                    "n_foci": 12,
                    "analyses": {"ale": {"n_clusters": 2}, "csale": {"n_clusters": 1}, "macm": {}},
                    "database": {
                        "source": "INPUT_DIR/database/",
                        "files": ["db1.tsv", "db2.tsv"],
                        "n_experiments": 321,
                        "n_foci": 4321,
                        "same_as_studyset": False,
                    },
                    "roi": {
                        "label": "cerebellum",
                        "n_voxels": 19206,
                        "n_dropped_outside_brain": 20,
                        "dilation_mm": 6.0,
                        "n_analysis_voxels": 25123,
                    },
                },
                {
                    "label": "wholebrain",
                    "n_experiments": 2,
                    "n_foci": 12,
                    "analyses": {"ale": {"n_clusters": 2}, "macm": {"skipped": f"too few {EVIL}"}},
                    "skipped": {"macm": f"too few {EVIL}"},
                    "database": {
                        "source": "every studyset in INPUT_DIR",
                        "files": ["wholebrain.tsv"],
                        "n_experiments": 3,
                        "n_foci": 12,
                        "same_as_studyset": True,
                    },
                },
                {
                    "label": "tiny",
                    "n_experiments": 4,
                    "n_foci": 9,
                    "analyses": {},
                    "skipped": {"all": "4 experiments < --min-experiments 15"},
                },
            ]
        ],
        "reused": ["wholebrain"],
    }
    path = build_report(out, context)
    return out, path


def test_report_written_with_bib(report):
    out, path = report
    assert path == out / "report.html" and path.exists()
    bib = (out / "references.bib").read_text()
    for key in (
        "turkeltaub2002",
        "turkeltaub2012",
        "eickhoff2009",
        "eickhoff2012",
        "eickhoff2016",
        "langner2014",
        "magielse2025",
        "laird2009",
        "robinson2010",
        "lancaster2007",
        "salo2023",
    ):
        assert f"@article{{{key}," in bib
    assert not list(out.glob(".report.html.*"))  # no temporary file left behind


def _frames(html: str) -> list[str]:
    return [htmllib.unescape(m) for m in re.findall(r'srcdoc="([^"]*)"', html)]


def test_no_external_addresses(report):
    html = report_pages.text(report[0])
    assert "http://" not in html and "https://" not in html
    assert "//cdn" not in html and "<script" not in html.lower()  # script only in viewers
    assert "<link" not in html.lower()
    frames = _frames(html)
    assert frames, "an interactive viewer per thresholded map"
    for page in frames:  # nilearn's viewer: its JavaScript inline, nothing fetched
        assert "<script>" in page and "brainsprite" in page
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)|https?://""", page)
        assert EVIL not in page


def test_inputs_are_escaped(report):
    html = report_pages.text(report[0])
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_size_and_content(report):
    out, path = report
    html = report_pages.text(out)
    assert [p.name for p in report_pages.pages(out)] == [
        "report.html",
        "studyset-cerebellum.html",
        "studyset-wholebrain.html",
    ]
    for p in report_pages.pages(out):  # entry page and each studyset page
        assert p.stat().st_size < 5 * 1024 * 1024, p
    assert path.stat().st_size < 100_000 and "data:image" not in path.read_text()
    assert html.count("data:image/png;base64,") >= 20
    index = path.read_text()
    for label in ("cerebellum", "wholebrain"):
        assert f'<a href="report/studyset-{label}.html">{label}</a>' in index
        assert 'href="../report.html"' in report_pages.page(out, label)
    cer = report_pages.page(out, "cerebellum")
    for title in (
        "ALE: SUIT flatmap of the thresholded z map",
        "C-SALE: SUIT flatmap of -log10 p in the significant clusters",
        "C-SALE: share of subsamples surviving the cluster-extent rule (the study&#39;s)",
        "C-SALE: SUIT flatmap of the share of subsamples surviving the cluster-extent "
        "rule (the study&#39;s)",
    ):
        assert f"<b>{title}</b>" in cer, title
    assert "SUIT flatmap" not in report_pages.page(out, "wholebrain")  # no cerebellar voxel
    for text in (
        "Studyset cerebellum",
        "Studyset wholebrain",
        "ALE vs C-SALE",
        "MACM: seed clusters",
        "base-rate map",
        "null distributions",
        "Region of interest: cerebellum",
        "Left Cerebellum VI",
        "Methods",
        "Magielse",
        "Lancaster",
        "tal2icbm",
        "CPU (numba, 2 threads)",
        "2 min 05 s",
        "4 experiments &lt; --min-experiments 15",
        'href="#studyset-wholebrain"',
        "Input foci of cerebellum",
        "-log10 p",
        "1/100 = 0.01",
        "db1.tsv, db2.tsv",
        "INPUT_DIR/database/",
        "19206 voxels",
        "interactive view",
    ):
        assert text in html, text
    assert "figure could not be drawn" not in html and "could not be shown" not in html


def test_one_copy_of_each_column_and_message(report):
    html = report_pages.text(report[0])
    whole = report_pages.page(report[0], "wholebrain")
    assert whole.count("Skipped macm: too few") == 1
    for table in re.findall(r"<table.*?</table>", html, re.S):
        heads = re.findall(r"<th>(.*?)</th>", table)
        assert len(heads) == len(set(heads)), heads
        assert sum("contribut" in h.lower() for h in heads) <= 1


def test_contributors_top_few_with_the_rest_in_details(tmp_path):
    from csale_app.report.tables import TOP_CONTRIBUTORS, clusters_report_table

    clusters = pd.DataFrame(
        {"cluster_id": [1], "size_voxels": [10], "peak_x": [0.0], "peak_y": [0.0], "peak_z": [0.0]}
    )
    contrib = pd.DataFrame(
        {
            "cluster_id": [1] * 8,
            "experiment_id": [f"e{i}" for i in range(8)],
            "jackknife": np.linspace(0.4, 0.05, 8),
            "n_foci_in_cluster": 1,
        }
    )
    t = clusters_report_table(clusters, contrib, "t")
    cell = t.rows[0][-1]
    assert cell.text.count("(") == TOP_CONTRIBUTORS and cell.text.startswith("e0")
    assert len(cell.more) == 8 - TOP_CONTRIBUTORS and cell.more_label == "5 more"


def test_summary_counts_equal_table_rows(report):
    index = report[1].read_text()
    for label in ("cerebellum", "wholebrain"):
        sec = report_pages.page(report[0], label)
        shown = re.search(r"<td>Experiments analysed</td><td>(\d+)", sec).group(1)
        rows = re.search(r"<summary>Experiments analysed \((\d+) rows\)</summary>", sec)
        assert shown == rows.group(1) == "2"
        summary_row = re.search(
            rf"<td[^>]*><a [^>]*>{label}</a></td><td[^>]*>(\d+)</td>", index
        ).group(1)
        assert summary_row == shown
    assert "not analysed" in sec or "dropped" in sec
    assert re.search(
        r"<td[^>]*>ALE 2; C-SALE 1; MACM clusters ALE 3; MACM clusters C-SALE 3"
        r"</td>",
        index,
    )


def test_peak_views_cut_at_a_listed_peak(report):
    out, path = report
    html = report_pages.text(out)
    views = re.findall(r'<figure data-peak="([^"]+)" data-table="([^"]+)"', html)
    assert len(views) >= 4
    for peak, table in views:
        hit = list(out.rglob(table))
        assert len(hit) == 1, table
        df = pd.read_csv(hit[0], sep="\t")
        listed = {
            ",".join(f"{v:g}" for v in r)
            for r in df[["peak_x", "peak_y", "peak_z"]].itertuples(index=False)
        }
        assert peak in listed, (peak, listed)


def test_methods_follow_what_ran(report):
    html = htmllib.unescape(report[1].read_text())
    methods = html[html.index('id="methods"') : html.index('id="references"')]
    assert "same inference as above" not in methods
    assert (
        "The reference database is --database if given, else INPUT_DIR/database/, else "
        "every studyset in INPUT_DIR, whatever --studyset-label selects"
    ) in methods
    assert "321 experiments with 4,321 foci from db1.tsv and db2.tsv" in methods
    assert "the permutation nulls run in the ROI dilated by 6 mm within the brain mask" in methods
    assert "unthresholded statistic maps keep the analysis mask" in methods
    assert "The MACM is whole-brain" in methods
    macm = methods[methods.index("Meta-analytic connectivity") :]
    macm = macm[: macm.index("</p>")]
    assert "restricted to the ROI" not in macm and "analysis mask" not in macm
    assert "reused only when a digest of the bytes of every input file" in methods
    assert "1/100" in methods


def test_database_is_shown_and_self_database_warned(report):
    html = report_pages.text(report[0])
    cer = html[html.index('id="studyset-cerebellum-csale"') :]
    cer = cer[: cer.index("</section>")]
    assert "db1.tsv, db2.tsv" in cer and "321" in cer and "4321" in cer
    assert 'class="alert"' not in cer
    assert "Results reused" in report_pages.page(report[0], "wholebrain")


def test_self_database_alert(report):
    html = report_pages.text(report[0])
    csale = html[html.index('id="studyset-wholebrain-csale"') :]
    assert 'class="alert"' in csale[: csale.index("</section>")]
    assert "exactly the analysed studyset" in csale


def test_write_table_sidecar_describes_columns(tmp_path):
    from csale_app.outputs.bids import write_table

    df = pd.DataFrame({"cluster_id": [1], "size_voxels": [3], "mystery": [0.5]})
    write_table(tmp_path / "x_meta-ale_desc-null_values.tsv", df)
    side = json.loads((tmp_path / "x_meta-ale_desc-null_values.json").read_text())
    assert set(df.columns) <= set(side) and side["size_voxels"]["Units"] == "voxels"
    assert "Description" in side
    write_table(tmp_path / "y_clusters.tsv", df, {"Method": "ALE"})
    side = json.loads((tmp_path / "y_clusters.json").read_text())
    assert side["Method"] == "ALE" and "cluster_id" in side


def test_failing_figure_is_a_notice(tmp_path, caplog):
    affine, brain = _template()
    _studyset(tmp_path, "one", affine, brain, with_roi=False, full=False)
    bad = next((tmp_path / "studyset-one").glob("*meta-ale_stat-z_desc-thresholded*.nii.gz"))
    bad.write_bytes(b"not a nifti")
    for p in (tmp_path / "studyset-one").glob("*_desc-null_values.tsv"):
        p.write_text("max_ale\tmax_cluster_size\nx\ty\n")
    with caplog.at_level(logging.WARNING, logger="csale_app"):
        build_report(tmp_path, {})
    html = report_pages.text(tmp_path)
    assert "could not be shown" in html or "could not be drawn" in html
    assert any("report:" in r.getMessage() for r in caplog.records)


def test_absent_families_are_skipped(tmp_path):
    folder = tmp_path / "studyset-onlytables"
    folder.mkdir()
    pd.DataFrame({"cluster_id": [], "size_voxels": []}).to_csv(
        folder / f"studyset-onlytables_{SPACE}_meta-ale_clusters.tsv", sep="\t", index=False
    )
    build_report(tmp_path, {})
    html = report_pages.text(tmp_path)
    assert "Studyset onlytables" in html
    assert "No thresholded map was written" in html and "No significant cluster" in html


def test_page_of_a_removed_studyset_is_removed(tmp_path):
    import shutil

    for label in ("a", "b"):
        folder = tmp_path / f"studyset-{label}"
        folder.mkdir()
        pd.DataFrame({"cluster_id": [], "size_voxels": []}).to_csv(
            folder / f"studyset-{label}_{SPACE}_meta-ale_clusters.tsv", sep="\t", index=False
        )
    build_report(tmp_path, {})
    assert [p.name for p in report_pages.pages(tmp_path)][1:] == [
        "studyset-a.html",
        "studyset-b.html",
    ]
    shutil.rmtree(tmp_path / "studyset-b")
    build_report(tmp_path, {})
    assert [p.name for p in report_pages.pages(tmp_path)][1:] == ["studyset-a.html"]
    assert "studyset-b.html" not in (tmp_path / "report.html").read_text()


def test_cerebellum_cuts_stay_in_the_cerebellum():
    from csale_app.io.roi import builtin_roi
    from csale_app.report.figures import z_cuts_within

    affine, brain = _template()
    tpl = nib.Nifti1Image(brain.astype(np.uint8), affine)
    roi = builtin_roi("cerebellum", tpl, brain)
    cuts = z_cuts_within(nib.Nifti1Image(roi.mask.astype(np.uint8), affine))
    assert len(cuts) == 7 and all(-60 <= z <= -10 for z in cuts)


def test_empty_output_dir(tmp_path):
    path = build_report(tmp_path, {"warnings": ["nothing ran"]})
    html = path.read_text()
    assert "No studyset results were found" in html and "nothing ran" in html


def test_layout_fits_1280_in_headless_chromium(report, tmp_path):
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    for page, n_tables in ((report[1], 3), (report[0] / "report" / "studyset-cerebellum.html", 10)):
        res, console = chromium.layout(page, tmp_path)
        assert res["page"] <= res["viewport"], ("the page scrolls sideways", page.name)
        assert len(res["tables"]) >= n_tables
        assert not chromium.overflowing(res), chromium.overflowing(res)
        assert not console and not res["errors"], (console, res["errors"])
        if n_tables == 10:
            assert res["frames"] and all(
                f.get("canvas") and not f.get("errors") for f in res["frames"]
            )


def test_layout_probe_sees_overflow_and_errors(tmp_path):
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><head></head><body><main style='width:400px'><table><tr>"
        "<td style='white-space:nowrap'>" + "x" * 400 + "</td></tr></table>"
        "</main><script>undefinedFunction()</script></body></html>"
    )
    res, console = chromium.layout(page, tmp_path)
    assert chromium.overflowing(res)
    assert res["errors"] or console


def test_renders_in_headless_chromium(report, tmp_path):
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from PIL import Image

    shot = tmp_path / "shot.png"
    proc = chromium.screenshot(report[0] / "report" / "studyset-cerebellum.html", shot, tmp_path)
    assert shot.exists(), proc.stderr[-3000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # not blank
    assert not chromium.console_errors(proc.stderr)
