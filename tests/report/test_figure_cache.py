"""Report figures drawn once: keyed by what they show, shared in a report, reused across runs."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csale_app.report import figure_cache, figures, viewer
from csale_app.report.figure_cache import FigureCache, active, figure_key

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.fixture
def mask_img():
    data = np.zeros((7, 8, 9), np.uint8)
    data[2:5, 3:6, 3:7] = 1
    return nib.Nifti1Image(data, AFFINE)


def test_key_follows_content_not_page_text(mask_img, rng):
    same = nib.Nifti1Image(np.asanyarray(mask_img.dataobj).copy(), AFFINE.copy())
    key = figure_key("roi_figure", {"mask_img": mask_img, "title": "A", "caption": ""})
    assert key == figure_key("roi_figure", {"mask_img": same, "title": "B", "caption": "c"})
    moved = np.asanyarray(mask_img.dataobj).copy()
    moved[0, 0, 0] = 1
    others = [
        figure_key("roi_figure", {"mask_img": nib.Nifti1Image(moved, AFFINE)}),
        figure_key(
            "roi_figure",
            {"mask_img": nib.Nifti1Image(np.asanyarray(mask_img.dataobj), np.diag([3.0, 2, 2, 1]))},
        ),
        figure_key("roi_figure", {"mask_img": mask_img, "threshold": 0.5}),
        figure_key("slices_figure", {"mask_img": mask_img}),
        figure_key(
            "roi_figure",
            {
                "mask_img": nib.Nifti1Image(
                    np.asanyarray(mask_img.dataobj).astype(np.float32), AFFINE
                )
            },
        ),
    ]
    assert len({key, *others}) == 1 + len(others)
    df = pd.DataFrame({"max_ale": rng.random(20)})
    changed = df.copy()
    changed.iloc[3, 0] += 1e-9
    assert figure_key("null_figure", {"null": df}) == figure_key("null_figure", {"null": df.copy()})
    assert figure_key("null_figure", {"null": df}) != figure_key("null_figure", {"null": changed})
    assert figure_key("x", {"obj": object()}) is None  # no content key: never shared


def test_unreadable_map_is_drawn_not_keyed(tmp_path, mask_img):
    """A map whose header loads but whose data cannot be read gets no key; the drawing then
    fails into a notice as before, and the report goes on."""
    path = tmp_path / "broken.nii"
    nib.save(mask_img, path)
    path.write_bytes(path.read_bytes()[:360])  # the 352-byte header and a few voxels
    broken = nib.load(path)
    assert figure_key("roi_figure", {"mask_img": broken}) is None
    with active(FigureCache(tmp_path / "store")) as cache:
        fig = figures.roi_figure(broken, "ROI")
    assert not fig.ok and "could not be drawn" in fig.error and cache.drawn == 0


def test_same_picture_is_drawn_once_in_a_report(mask_img, monkeypatch):
    cache = FigureCache()
    calls = []
    real = figures.render_figure
    monkeypatch.setattr(
        figures, "render_figure", lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    )
    with active(cache):
        a = figures.roi_figure(mask_img, "Region of interest: one", caption="first")
        b = figures.roi_figure(
            nib.Nifti1Image(np.asanyarray(mask_img.dataobj).copy(), AFFINE),
            "Region of interest: two",
        )
        c = figures.peak_figure(mask_img, "peak", (6.0, 8.0, 10.0), attrs={"peak": "6,8,10"})
        d = figures.peak_figure(mask_img, "peak again", (6.0, 8.0, 10.0), attrs={"peak": "x"})
    assert calls == ["Region of interest: one", "peak"]
    assert (cache.drawn, cache.hits) == (2, 2)
    assert (
        a.ok
        and a.uri == b.uri
        and (a.title, b.title) == ("Region of interest: one", "Region of interest: two")
    )
    assert (a.caption, b.caption) == ("first", "")
    assert c.uri == d.uri and (c.attrs, d.attrs) == ({"peak": "6,8,10"}, {"peak": "x"})
    # outside a report nothing is shared
    figures.roi_figure(mask_img, "again")
    assert calls[-1] == "again"


def test_stored_figures_are_reused_by_a_later_report_and_pruned(tmp_path, mask_img, monkeypatch):
    folder = tmp_path / "report-figures"
    with active(FigureCache(folder)) as first:
        fig = figures.roi_figure(mask_img, "ROI")
        view = viewer.viewer(mask_img, "viewer")
    assert fig.ok and view.ok and first.drawn == 2
    assert len(list(folder.glob("*.json"))) == 2

    def no_drawing(*a, **k):
        raise AssertionError("drawn again")

    monkeypatch.setattr(figures, "render_figure", no_drawing)
    monkeypatch.setattr("nilearn.plotting.view_img", no_drawing)
    with active(FigureCache(folder)) as second:
        again = figures.roi_figure(mask_img, "ROI, second run")
        view2 = viewer.viewer(mask_img, "viewer, second run")
    assert (second.drawn, second.hits) == (0, 2)
    assert again.uri == fig.uri and again.title == "ROI, second run"
    assert (view2.html, view2.width, view2.height) == (view.html, view.width, view.height)

    monkeypatch.undo()
    for p in folder.glob("*.json"):  # a damaged store is drawn again, never trusted
        p.write_text(json.dumps({"uri": "https://example.org/x.png"}))
    with active(FigureCache(folder)) as third:
        fixed = figures.roi_figure(mask_img, "ROI")
    assert (third.drawn, third.hits) == (1, 0) and fixed.uri == fig.uri
    assert third.prune() == 1  # the viewer was not used by this report
    assert len(list(folder.glob("*.json"))) == 1


def test_unwritable_store_still_draws(tmp_path, mask_img):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with active(FigureCache(blocker / "report-figures")) as cache:
        assert figures.roi_figure(mask_img, "ROI").ok
    assert cache.drawn == 1 and cache.prune() == 0


def test_key_changes_with_versions_and_drawing_code(mask_img, monkeypatch):
    key = figure_key("roi_figure", {"mask_img": mask_img})
    monkeypatch.setattr(figure_cache, "salt", lambda: b"another version")
    assert figure_key("roi_figure", {"mask_img": mask_img}) != key
