"""Issue 25 item 2 (a small run's overhead): nilearn's resampling without nilearn, figures
drawn in forked copies, the report process. Each piece must give what the plain way gives."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from csale_app.io.templates import resample_nearest
from csale_app.report import forked

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _nilearn(data, affine, target):
    from nilearn.image import resample_to_img

    out = resample_to_img(
        nib.Nifti1Image(data, affine),
        target,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return np.asanyarray(out.dataobj)


@pytest.mark.parametrize("key", ["ho_cortical", "aal3_subcortical", "suit_cerebellar"])
def test_atlas_resampling_is_nilearns(key):
    from csale_app.io import atlases as labels

    img = nib.load(str(labels.atlas_files()[key]))
    data = np.rint(np.asanyarray(img.dataobj)).astype(np.int32)
    tpl = labels._template()
    ours = resample_nearest(data, img.affine, tpl.affine, tpl.shape[:3])
    theirs = _nilearn(data, img.affine, tpl)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


@pytest.mark.filterwarnings("ignore:NaNs or infinite values")
@pytest.mark.parametrize("case", ["oblique", "shifted", "nan"])
def test_resampling_other_grids_is_nilearns(case):
    rng = np.random.default_rng(3)
    data = (rng.random((20, 22, 18)) > 0.6).astype(np.float32)
    affine = np.diag([2.5, 2.5, 2.5, 1.0])
    affine[:3, 3] = [-20, -25, -18]
    if case == "oblique":
        c, s = np.cos(0.2), np.sin(0.2)
        affine[:2, :2] = 2.5 * np.array([[c, -s], [s, c]])
    if case == "nan":
        data[3, 4, 5] = np.nan
    target = nib.Nifti1Image(
        np.zeros((30, 32, 28), np.int8),
        np.diag([2.0, 2.0, 2.0, 1.0])
        + np.array([[0, 0, 0, -29], [0, 0, 0, -31.5], [0, 0, 0, -27], [0] * 4]),
    )
    ours = resample_nearest(data, affine, target.affine, target.shape)
    theirs = _nilearn(data, affine, target)
    assert np.array_equal(ours, theirs, equal_nan=True)


def test_run_parallel_same_results_and_logs(caplog):
    import multiprocessing

    started = multiprocessing.get_context("fork").Value("i", 0)

    def square(i):
        logging.getLogger("csale_app.test").warning("task %d", i)
        if i < 2:  # the first two tasks wait for each other: one runs in the copy
            with started.get_lock():
                started.value += 1
            deadline = time.time() + 30
            while started.value < 2 and time.time() < deadline:
                time.sleep(0.01)
        return i * i, os.getpid()

    tasks = [lambda i=i: square(i) for i in range(7)]
    with caplog.at_level(logging.WARNING, logger="csale_app"):
        out = forked.run_parallel(tasks, 2)
    assert [v for v, _ in out] == [i * i for i in range(7)]
    assert len({pid for _, pid in out}) == 2  # this process and one copy
    assert sorted(r.getMessage() for r in caplog.records if r.name == "csale_app.test") == sorted(
        f"task {i}" for i in range(7)
    )  # the copy's records replayed here


def test_run_parallel_redoes_what_a_copy_lost():
    parent = os.getpid()

    def die_in_copy(i):
        if os.getpid() != parent:
            os._exit(3)  # a copy killed mid-task: its tasks are done here instead
        return i

    tasks = [lambda i=i: die_in_copy(i) for i in range(5)]
    assert forked.run_parallel(tasks, 2) == list(range(5))


def test_run_parallel_raises_and_leaves_no_process():
    def boom():
        raise ValueError("boom")

    import psutil

    # other tests of the session may have children of their own: compare, not assume none
    before = {c.pid for c in psutil.Process().children()}
    with pytest.raises(ValueError):
        forked.run_parallel([boom, boom, boom], 2)
    left = {c.pid for c in psutil.Process().children()} - before
    assert not left, left  # every copy was reaped (a zombie is still a child)


def test_report_process_unused_is_stopped_at_once():
    proc = forked.ReportProcess()
    pid = proc.pid
    assert pid is not None
    t0 = time.perf_counter()
    proc.close()
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_run_does_not_import_the_plotting_stack_before_the_report():
    """The run's own process reaches the report without matplotlib or nilearn.image (the
    report process imports them); the atlas labels no longer need nilearn."""
    code = (
        "import sys\n"
        "from csale_app.stats.labels import label_at\n"
        "from csale_app.report.forked import start_report_process\n"
        "import csale_app.pipeline\n"
        "label_at((0.0, -60.0, -30.0))\n"
        "print(sorted(m for m in ('matplotlib', 'nilearn.image', 'sklearn') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _pixels(uri: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_figures_same_pixels_as_before(monkeypatch):
    """Glass brains with outlines added without data limits, encoded from Agg's buffer:
    the pixels of the plain way (outlines through add_patch, savefig's PNG)."""
    import contextlib
    import io

    import matplotlib
    import nimare  # noqa: F401  (sets savefig.bbox: the test must not depend on the order)
    import pandas as pd
    from PIL import Image

    from csale_app.report import figures

    data = np.zeros((91, 109, 91), np.float32)
    data[30:36, 50:58, 40:46] = 4.0
    affine = np.array([[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(data, affine)
    foci = pd.DataFrame(
        {
            "x_mni": [-30.0, 20.0],
            "y_mni": [-20.0, 10.0],
            "z_mni": [10.0, 40.0],
            "experiment_id": ["a", "b"],
        }
    )
    fast = [
        _pixels(figures.glass_brain_figure.__wrapped__(img, "g").uri),
        _pixels(figures.foci_figure.__wrapped__(foci, "f").uri),
    ]

    def savefig_uri(fig) -> str:
        import base64

        buf = io.BytesIO()
        # importing NiMARE (other tests do) sets rcParams["savefig.bbox"] = "tight"; the
        # run never imports it, so the reference is savefig's default, whatever came before
        with matplotlib.rc_context({"savefig.bbox": "standard"}):
            fig.savefig(buf, format="png", dpi=figures.DPI, facecolor=fig.get_facecolor())
        buf.seek(0)
        out = io.BytesIO()
        Image.open(buf).convert("RGB").quantize(
            figures.COLOURS, method=Image.Quantize.MEDIANCUT
        ).save(out, format="PNG")
        return figures.PNG_URI + base64.b64encode(out.getvalue()).decode("ascii")

    monkeypatch.setattr(figures, "_outlines_without_limits", contextlib.nullcontext)
    monkeypatch.setattr(figures, "to_data_uri", savefig_uri)
    plain = [
        _pixels(figures.glass_brain_figure.__wrapped__(img, "g").uri),
        _pixels(figures.foci_figure.__wrapped__(foci, "f").uri),
    ]
    for a, b in zip(fast, plain):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_flatmap_same_pixels_as_matplotlibs_limits(monkeypatch):
    """The flatmap's triangle limits computed from their corners at once: the same box as
    matplotlib's walk over the paths, so the same pixels."""
    from matplotlib.collections import PolyCollection

    from csale_app.report import flatmap

    flatmap.suit_flatmap()  # SUITPy is a dependency (scripts/setup_env.sh): no skip

    data = np.zeros((91, 109, 91), np.float32)
    data[30:40, 20:30, 10:18] = 3.0  # cerebellar cortex, left and right of the vermis
    data[52:60, 22:30, 12:18] = 5.0
    affine = np.array([[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(data, affine)
    seen = []
    original = flatmap._triangle_limits

    def checked(collection, corners, trans_data):
        fast = original(collection, corners, trans_data)
        plain = PolyCollection.get_datalim(collection, trans_data)
        seen.append(fast)
        assert np.array_equal(fast.get_points(), plain.get_points())
        assert np.array_equal(fast.minpos, plain.minpos)
        return fast

    monkeypatch.setattr(flatmap, "_triangle_limits", checked)
    fast = _pixels(flatmap.flatmap_figure.__wrapped__(img, "f").uri)
    assert seen, "the flatmap did not use its own limits"
    monkeypatch.setattr(
        flatmap, "_triangle_limits", lambda c, corners, t: PolyCollection.get_datalim(c, t)
    )
    plain = _pixels(flatmap.flatmap_figure.__wrapped__(img, "f").uri)
    assert fast.shape == plain.shape and np.array_equal(fast, plain)
    assert (fast != fast[0, 0]).any(axis=-1).sum() > 1000  # something was drawn


def test_glass_brain_outlines_parsed_once(monkeypatch):
    """The outline files are parsed once per process (the warm-up's read_outlines), and
    nilearn's ``json`` is its own again after a figure."""
    import json

    from nilearn.plotting import glass_brain

    from csale_app.report import figures

    figures.read_outlines()
    parsed = []
    monkeypatch.setattr(json, "load", lambda *a, **k: parsed.append(a) or {})
    img = nib.Nifti1Image(np.zeros((9, 9, 9), np.float32), np.eye(4))
    assert figures.glass_brain_figure.__wrapped__(img, "g").ok
    assert not parsed and glass_brain.json is json


def test_viewer_same_page_with_the_template_sprite_kept(monkeypatch):
    """The viewer's template sprite drawn once (the warm-up) and reused: the same page as
    drawn from scratch."""
    import contextlib

    from nilearn.plotting import html_stat_map

    from csale_app.report import viewer
    from csale_app.report.figures import background_image

    bg = background_image()
    data = np.zeros(bg.shape[:3], np.float32)
    data[40:46, 50:58, 40:46] = 4.0
    img = nib.Nifti1Image(data, bg.affine)
    viewer._SPRITES.clear()
    viewer._grey_jpeg.cache_clear()
    viewer.warm_up()
    drawn = []
    original = html_stat_map._save_sprite
    monkeypatch.setattr(
        html_stat_map, "_save_sprite", lambda *a, **k: drawn.append(1) or original(*a, **k)
    )
    kept = viewer.viewer.__wrapped__(img, "v")
    assert kept.ok and len(drawn) == 1  # the map's sprite only; the template's was kept
    monkeypatch.setattr(viewer, "_sprites_kept", contextlib.nullcontext)
    viewer._grey_jpeg.cache_clear()
    plain = viewer.viewer.__wrapped__(img, "v")
    assert len(drawn) == 3 and plain.html == kept.html
