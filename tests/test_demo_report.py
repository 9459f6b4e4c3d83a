"""The demo (n-back and flanker, cerebellum, ALE + C-SALE + MACM) at reduced iterations:
its report is one offline file under 20 MB that renders in headless Chromium."""

import re
import shutil
import subprocess

import pytest

from csale_app.cli.run import main
from csale_app.io.demo_data import write_demo_input


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    write_demo_input(base / "in")
    out = base / "out"
    # the demo's command with few permutations; the MACM is seeded by the ROI here because
    # C-SALE clusters are not guaranteed at 40 permutations
    code = main([str(base / "in"), str(out), "group", "--roi", "cerebellum", "--n-iters", "40",
                 "--voxel-thresh", "0.05", "--macm-seed", "roi", "--quiet"])
    assert code == 0
    return out


def test_demo_runs_all_three_analyses(demo_output):
    for label in ("nback", "flanker"):
        d = demo_output / f"studyset-{label}"
        assert list(d.glob("*_roi-cerebellum_mask.nii.gz"))
        for meta in ("ale", "csale"):
            assert list(d.glob(f"*meta-{meta}_stat-z_desc-thresholded_statmap.nii.gz"))
    macm = list((demo_output / "studyset-nback").glob("macm-*"))
    assert macm, "MACM seeded by the cerebellum"
    assert list(macm[0].glob("*_experiments.tsv"))


def test_demo_report_is_offline_and_small(demo_output):
    report = demo_output / "report.html"
    html = report.read_text(encoding="utf-8")
    assert report.stat().st_size < 20 * 1024 * 1024
    assert not re.search(r"https?://", html)
    assert "ALE vs C-SALE" in html or "ALE vs. C-SALE" in html


def test_demo_report_renders_in_chromium(demo_output, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (CI installs it in .ci/run)")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1280,2400",
         f"file://{demo_output / 'report.html'}"],
        capture_output=True, text=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 10000
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    from PIL import Image

    img = Image.open(shot).convert("RGB").resize((128, 240))
    assert len(set(img.getdata())) > 20
