"""The HTML report: self-contained, escaped, small enough, and renders in headless Chromium."""

import json
import logging
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csale_app.report import build_report

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
    side = {"Method": f"{meta.upper()} with Monte Carlo FWE", "NullIterations": 100,
            "ClusterFormingThreshold": {"p": 0.001, "ale": 0.0123}, "Label": EVIL}
    stem = f"{prefix}_{SPACE}_meta-{meta}"
    _save(folder / f"{stem}_stat-z_desc-thresholded_statmap.nii.gz", z, affine, side)
    _save(folder / f"{stem}_stat-ale_statmap.nii.gz", z / 200.0, affine, side)
    _save(folder / f"{stem}_stat-z_statmap.nii.gz", z, affine, side)
    if baserate:
        br = brain * (1.0 if roi is None else roi) * np.linspace(0, 1, shape[2])[None, None, :]
        _save(folder / f"{stem}_stat-prob_desc-baserate_statmap.nii.gz", br / br.sum(), affine)
    rows = []
    for i, c in enumerate(centres, start=1):
        rows.append({"cluster_id": i, "size_voxels": 250 - i, "size_mm3": 8.0 * (250 - i),
                     "peak_x": c[0], "peak_y": c[1], "peak_z": c[2], "peak_ale": 0.025,
                     "centre_x": c[0], "centre_y": c[1], "centre_z": c[2], "p_fwe_size": 0.001,
                     "peak_label_ho_cortical": "unlabelled",
                     "composition": "60% Left Cerebellum VI; 40% unlabelled"})
    pd.DataFrame(rows).to_csv(folder / f"{stem}_clusters.tsv", sep="\t", index=False)
    peaks = pd.DataFrame([{"cluster_id": r["cluster_id"], "peak_id": str(r["cluster_id"]),
                           "x": r["peak_x"], "y": r["peak_y"], "z": r["peak_z"],
                           "value": 0.025, "label_suit_cerebellar": "Left Cerebellum VI"}
                          for r in rows])
    peaks.to_csv(folder / f"{stem}_peaks.tsv", sep="\t", index=False)
    contrib = pd.DataFrame({"cluster_id": [1, 1, 2], "experiment_id": [EVIL, "Smith2010", EVIL],
                            "jackknife": [0.4, 0.1, 0.0], "n_foci_in_cluster": [2, 1, 0]})
    contrib.to_csv(folder / f"{stem}_contributions.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    pd.DataFrame({"max_ale": rng.gamma(5, 0.003, 200),
                  "max_cluster_size": rng.poisson(60, 200)}).to_csv(
        folder / f"{stem}_desc-null_values.tsv", sep="\t", index=False)


def _studyset(out, label, affine, brain, with_roi, full=True):
    folder = out / f"studyset-{label}"
    prefix = f"studyset-{label}"
    folder.mkdir(parents=True)
    pd.DataFrame({"experiment_id": [EVIL, "Smith2010", "Doe2012"],
                  "study_id": [EVIL, "Smith2010", "Doe2012"], "sample_size": [12, 20, 15],
                  "n_foci": [3, 5, 4], "space": ["MNI", "TAL", "MNI"],
                  "status": ["kept", "kept", "dropped: no foci inside the template"]}).to_csv(
        folder / f"{prefix}_desc-experiments_table.tsv", sep="\t", index=False)
    roi = None
    if with_roi:
        roi = np.zeros(brain.shape, bool)
        lo, hi = _ijk(affine, (-50, -90, -60)), _ijk(affine, (50, -35, -15))
        roi[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
        roi &= brain
        _save(folder / f"{prefix}_roi-cerebellum_mask.nii.gz", roi, affine)
    cents = [(-30, -60, -30), (28, -64, -40)] if with_roi else [(-40, -20, 50), (38, 4, 2)]
    _analysis(folder, prefix, "ale", affine, brain, cents, roi)
    if not full:
        return
    _analysis(folder, prefix, "csale", affine, brain, cents[:1], roi, baserate=True)
    mf = folder / "macm-clusters"
    mp = f"{prefix}_macm-clusters"
    seed = _blob(brain.shape, affine, cents[0], 8, 1.0) > 0
    _save(mf / f"{mp}_mask.nii.gz", seed, affine)
    pd.DataFrame({"experiment_id": [EVIL, "Smith2010"], "n_foci_in_seed": [1, 2]}).to_csv(
        mf / f"{mp}_experiments.tsv", sep="\t", index=False)
    for meta in ("ale", "csale"):
        _analysis(mf, mp, meta, affine, brain, [(-40, -20, 50), (2, 4, 52), (-30, -60, -30)],
                  baserate=meta == "csale")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    affine, brain = _template()
    _studyset(out, "cerebellum", affine, brain, with_roi=True)
    _studyset(out, "wholebrain", affine, brain, with_roi=False)
    context = {
        "version": "0.1.0", "command_line": ["csale-app", "in", "out", "group", EVIL],
        "settings": {"n_iters": 100, "voxel_thresh": 0.001, "cluster_alpha": 0.05,
                     "analyses": ["ale", "csale", "macm"], "roi": "cerebellum",
                     "csale_null": "probabilistic", "random_seed": 7, "min_cluster_size": 50},
        "device": "CPU (numba, 2 threads)", "runtime_s": 125.3,
        "warnings": [f"experiment '{EVIL}' has few foci"],
        "studysets": [
            {"label": "cerebellum", "n_experiments": 3, "n_foci": 12,
             "analyses": {"ale": {"n_clusters": 2}, "csale": {"n_clusters": 1}, "macm": {}}},
            {"label": "wholebrain", "n_experiments": 3, "n_foci": 12,
             "analyses": {"ale": {"n_clusters": 2}}, "skipped": {"macm": f"too few {EVIL}"}},
            {"label": "tiny", "n_experiments": 4, "n_foci": 9, "analyses": {},
             "skipped": {"all": "4 experiments < --min-experiments 15"}},
        ],
    }
    path = build_report(out, context)
    return out, path


def test_report_written_with_bib(report):
    out, path = report
    assert path == out / "report.html" and path.exists()
    bib = (out / "references.bib").read_text()
    for key in ("turkeltaub2002", "turkeltaub2012", "eickhoff2009", "eickhoff2012",
                "eickhoff2016", "langner2014", "magielse2025", "laird2009", "robinson2010",
                "lancaster2007", "salo2023"):
        assert f"@article{{{key}," in bib
    assert not list(out.glob(".report.html.*"))  # no temporary file left behind


def test_no_external_addresses(report):
    html = report[1].read_text()
    assert "http://" not in html and "https://" not in html
    assert "//cdn" not in html and "<script" not in html.lower()
    assert "<link" not in html.lower()


def test_inputs_are_escaped(report):
    html = report[1].read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_size_and_content(report):
    out, path = report
    html = path.read_text()
    assert path.stat().st_size < 20 * 1024 * 1024
    assert html.count("data:image/png;base64,") >= 20
    for text in ("Studyset cerebellum", "Studyset wholebrain", "ALE vs C-SALE",
                 "MACM: seed clusters", "base-rate map", "null distributions",
                 "Region of interest: cerebellum", "Left Cerebellum VI", "Methods",
                 "Magielse", "Lancaster", "tal2icbm", "CPU (numba, 2 threads)", "2 min 05 s",
                 "4 experiments &lt; --min-experiments 15", 'href="#studyset-wholebrain"'):
        assert text in html, text
    assert "figure could not be drawn" not in html


def test_failing_figure_is_a_notice(tmp_path, caplog):
    affine, brain = _template()
    _studyset(tmp_path, "one", affine, brain, with_roi=False, full=False)
    bad = next((tmp_path / "studyset-one").glob("*meta-ale_stat-z_desc-thresholded*.nii.gz"))
    bad.write_bytes(b"not a nifti")
    for p in (tmp_path / "studyset-one").glob("*_desc-null_values.tsv"):
        p.write_text("max_ale\tmax_cluster_size\nx\ty\n")
    with caplog.at_level(logging.WARNING, logger="csale_app"):
        path = build_report(tmp_path, {})
    html = path.read_text()
    assert "could not be shown" in html or "could not be drawn" in html
    assert any("report:" in r.getMessage() for r in caplog.records)


def test_absent_families_are_skipped(tmp_path):
    folder = tmp_path / "studyset-onlytables"
    folder.mkdir()
    pd.DataFrame({"cluster_id": [], "size_voxels": []}).to_csv(
        folder / f"studyset-onlytables_{SPACE}_meta-ale_clusters.tsv", sep="\t", index=False)
    html = build_report(tmp_path, {}).read_text()
    assert "Studyset onlytables" in html
    assert "No thresholded map was written" in html and "No significant cluster" in html


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


def _chromium():
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and Path(c).exists():
            return c
    return None


def test_renders_in_headless_chromium(report, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from PIL import Image

    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", f"--screenshot={shot}", "--window-size=1280,2000",
           report[1].resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.exists(), proc.stderr[-3000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # not blank
    page_errors = [ln for ln in proc.stderr.splitlines()
                   if "Uncaught" in ln or ("CONSOLE" in ln and "report.html" in ln)]
    assert not page_errors, page_errors
