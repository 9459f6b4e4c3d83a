"""A report that scales, and the cerebellum on the SUIT flatmap.

One run (the slowest part of this file, shared by every test here): 60 studysets of 20
experiments each, foci around cerebellar spots, ALE in the built-in cerebellum ROI with 25
permutations. To keep it cheap the 60 studysets repeat two distinct ones (task00, task02, ...
are one; task01, task03, ... the other): every studyset is analysed and gets its own page,
while the report draws each distinct picture once (figure cache), as a rerun would.

- entry page OUTPUT_DIR/report.html under 5 MB with one linked row per studyset; each
  studyset page (OUTPUT_DIR/report/studyset-<S>.html) under 5 MB and offline;
- headless Chromium opens the entry page, every link resolves, and it opens a studyset page
  reached by a link: no console error, its SUIT flatmap drawn and first in its section
  (cerebellar ROI);
- the SUIT lobule table (TSV + sidecar, and in the page) sums to the map's voxel count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csale_app.cli.run import main

from tests import chromium, report_pages

N_STUDYSETS = 60
SPOTS = np.array([(-30, -62, -28), (30, -64, -30), (2, -70, -20), (-20, -50, -50)], float)


def write_input(
    folder: Path, n_studysets: int = N_STUDYSETS, n_distinct: int = 2, n_experiments: int = 20
) -> None:
    """``n_studysets`` TSV files cycling through ``n_distinct`` generated studysets."""
    folder.mkdir(parents=True)
    tables = []
    for k in range(n_distinct):
        rng = np.random.default_rng(100 + k)
        rows = []
        for e in range(n_experiments):
            for _ in range(6):
                xyz = SPOTS[rng.integers(0, len(SPOTS) - k)] + rng.normal(0, 4, 3)
                rows.append(
                    {
                        "study_id": f"set{k}_study{e:02d}",
                        "contrast_id": "c1",
                        "x": round(xyz[0]),
                        "y": round(xyz[1]),
                        "z": round(xyz[2]),
                        "space": "MNI",
                        "sample_size": 12 + (e * 7) % 30,
                    }
                )
        tables.append(pd.DataFrame(rows))
    for i in range(n_studysets):
        tables[i % n_distinct].to_csv(folder / f"task{i:02d}.tsv", sep="\t", index=False)


@pytest.fixture(scope="module")
def sixty(tmp_path_factory):
    base = tmp_path_factory.mktemp("sixty")
    write_input(base / "in")
    out = base / "out"
    assert (
        main(
            [
                str(base / "in"),
                str(out),
                "group",
                "--analyses",
                "ale",
                "--roi",
                "cerebellum",
                "--n-iters",
                "25",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_entry_page_and_studyset_pages_are_small_and_offline(sixty):
    pages = report_pages.pages(sixty)
    assert len(pages) == 1 + N_STUDYSETS
    entry = pages[0].read_text(encoding="utf-8")
    assert pages[0].stat().st_size < 5 * 1024 * 1024
    assert "data:image" not in entry  # figures live on the studyset pages
    links = re.findall(r'<a href="(report/studyset-[^"]+\.html)">', entry)
    assert sorted(set(links)) == [f"report/{p.name}" for p in pages[1:]]
    for page in pages[1:]:
        assert page.stat().st_size < 5 * 1024 * 1024, page
    text = pages[1].read_text(encoding="utf-8")
    assert not re.search(r"https?://", text) and "<link" not in text.lower()
    assert 'href="../report.html"' in text
    assert text.count("data:image/png;base64,") >= 5
    assert "/report" in (sixty / ".bidsignore").read_text().splitlines()


def test_chromium_opens_entry_page_and_a_studyset_page_by_its_link(sixty, tmp_path):
    if chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    res, console = chromium.layout(sixty / "report.html", tmp_path, beside=True)
    assert not console and not res["errors"], (console, res["errors"])
    assert res["page"] <= res["viewport"] and not chromium.overflowing(res)
    targets = {Path(unquote(urlparse(u).path)) for u in res["links"]}
    pages = {p for p in targets if p.parent.name == "report"}
    assert len(pages) == N_STUDYSETS and all(p.is_file() for p in pages)
    page = min(pages)
    res, console = chromium.layout(page, tmp_path, beside=True)
    assert not console and not res["errors"], (console, res["errors"])
    assert not chromium.overflowing(res), chromium.overflowing(res)
    back = {Path(unquote(urlparse(u).path)) for u in res["links"]}
    assert sixty / "report.html" in back  # the way back to the entry page resolves
    assert res["frames"] and all(f.get("canvas") for f in res["frames"])
    flat = res["flatmaps"]
    assert flat and all(f["shown"] and f["width"] > 200 and f["height"] > 150 for f in flat)
    assert any(f["first"] and f["section"].endswith("-ale") for f in flat), flat


def test_flatmap_is_the_first_figure_for_a_cerebellar_roi(sixty):
    html = report_pages.page(sixty, "task00")
    sec = html[html.index('id="studyset-task00-ale"') :]
    first = re.search(r"<figure([^>]*)>", sec).group(1)
    assert 'data-flatmap="suit"' in first
    assert "SUIT flatmap of the thresholded z map" in sec and "lobule borders" in sec


def test_lobule_table_sums_to_the_map_voxel_count(sixty):
    checked = 0
    for label in ("task00", "task01"):
        folder = sixty / f"studyset-{label}"
        (thr,) = folder.glob("*_meta-ale_stat-z_desc-thresholded_statmap.nii.gz")
        (tsv,) = folder.glob("*_meta-ale_lobules.tsv")
        n_map = int(np.count_nonzero(np.nan_to_num(np.asanyarray(nib.load(thr).dataobj))))
        table = pd.read_csv(tsv, sep="\t")
        assert n_map > 0 and int(table["n_voxels"].sum()) == n_map
        assert table["percent_of_result"].sum() == pytest.approx(100, abs=0.05)
        lobules = table[table["suit_label"] > 0]
        assert (lobules["n_voxels"] <= lobules["lobule_voxels"]).all()
        assert list(lobules["n_voxels"]) == sorted(lobules["n_voxels"], reverse=True)
        side = json.loads(tsv.with_suffix(".json").read_text())
        assert set(table.columns) <= set(side) and "SUIT" in side["Atlas"]["Name"]
        shown = re.search(
            r"Significant voxels per SUIT lobule.*?</table>\s*<div "
            r'class="tablenote">(\d+) significant voxels',
            report_pages.page(sixty, label),
            re.DOTALL | re.IGNORECASE,
        )
        assert shown and int(shown.group(1)) == n_map
        checked += 1
    assert checked == 2


def test_lobule_table_counts_by_hand():
    """Two lobules and the outside, on the template grid: counts, shares and the order."""
    from csale_app.io.atlases import load_atlas
    from csale_app.stats.lobules import OUTSIDE, lobule_table

    atlas = load_atlas("suit_cerebellar").data
    codes = [c for c in np.unique(atlas) if c > 0][:2]
    mask = np.zeros(atlas.shape, bool)
    a = np.argwhere(atlas == codes[0])[:7]
    b = np.argwhere(atlas == codes[1])[:3]
    mask[tuple(a.T)] = mask[tuple(b.T)] = True
    mask[0, 0, 0] = True  # outside every lobule
    table = lobule_table(mask)
    assert list(table["suit_label"]) == [codes[0], codes[1], 0]
    assert list(table["n_voxels"]) == [7, 3, 1] and table["lobule"].iloc[-1] == OUTSIDE
    assert table["percent_of_result"].tolist() == [
        round(700 / 11, 2),
        round(300 / 11, 2),
        round(100 / 11, 2),
    ]
    size = int((atlas == codes[0]).sum())
    assert table["percent_of_lobule"].iloc[0] == round(700 / size, 2)
    assert lobule_table(np.zeros(atlas.shape, bool)) is None  # not cerebellar: no table
