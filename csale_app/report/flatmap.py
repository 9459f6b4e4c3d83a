"""SUIT cerebellar flatmaps (Diedrichsen & Zotow 2015) of thresholded maps, with SUITPy.

A map is sampled onto SUITPy's cerebellar surfaces in MNI152NLin6Asym (``PIAL_FSL`` /
``WHITE_FSL``: SUITPy calls that space "FSL"; the maps here are on FSL's MNI152NLin6Asym
2 mm grid) by ``flatmap.vol_to_surf`` (six depths between white and pial surface; zeros,
i.e. non-significant voxels, ignored, so a vertex shows the mean of the significant
samples along its line), then drawn by ``flatmap.plot`` on the flat surface with SUITPy's
lobule borders.

SUITPy is installed without its declared dependencies (ANTsPy, requests, ... are for
normalisation and atlas downloads, not the flatmap), so its package ``__init__`` (which
imports them all) cannot run: :func:`suit_flatmap` loads only ``SUITPy/flatmap.py``, which
needs numpy, scipy, nibabel, matplotlib, plotly and nitools (``neuroimagingtools``).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from .figures import Figure, finite_image, render_figure, figure

LOG = logging.getLogger(__name__)
SUIT_SPACE = "FSL"  # SUITPy's name for its MNI152NLin6Asym surfaces
CEREBELLAR_ROI_SHARE = 0.5  # an ROI with at least this share of voxels in SUIT's lobules


@functools.lru_cache(maxsize=1)
def suit_flatmap():
    """SUITPy's ``flatmap`` module, loaded from its file (see the module docstring)."""
    spec = importlib.util.find_spec("SUITPy")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "SUITPy is not installed: pip install --no-deps "
            "suitpy==2.1.2 (see README, 'Installation')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "flatmap.py"
    mod_spec = importlib.util.spec_from_file_location("csale_app_suitpy_flatmap", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    module._render_matplotlib = _render_triangles  # this private copy only
    return module


def _render_triangles(
    vertices,
    faces,
    face_color,
    borders,
    bordercolor,
    bordersize,
    new_figure,
    backgroundcolor,
    frame,
):
    """SUITPy 2.1.2's ``_render_matplotlib`` (same arguments, same picture) drawing the
    56,588 triangles as one ``PolyCollection`` instead of one ``Polygon`` patch each: about
    twenty times faster (the patches took ~6 s per flatmap)."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    if frame is None:
        frame = [
            np.nanmin(vertices[:, 0]),
            np.nanmax(vertices[:, 0]),
            np.nanmin(vertices[:, 1]),
            np.nanmax(vertices[:, 1]),
        ]
    inside = (
        (vertices[:, 0] >= frame[0])
        & (vertices[:, 0] <= frame[1])
        & (vertices[:, 1] >= frame[2])
        & (vertices[:, 1] <= frame[3])
    )
    face_in = np.any(inside[faces], axis=1)
    corners = vertices[faces[face_in]][:, :, :2]
    tris = PolyCollection(
        corners,
        facecolors=face_color[face_in],
        edgecolors=face_color[face_in],
        linewidths=0.5,
    )
    tris.get_datalim = functools.partial(_triangle_limits, tris, corners)
    if new_figure:
        plt.figure(figsize=(7, 7))
    ax = plt.gca()
    ax.add_collection(tris)
    ax.set_xlim(frame[0], frame[1])
    ax.set_ylim(frame[2], frame[3])
    ax.axis("equal")
    ax.axis("off")
    plt.gcf().set_facecolor(backgroundcolor)
    if borders is not None:
        ax.plot(
            borders[:, 0],
            borders[:, 1],
            color=bordercolor,
            marker=".",
            linestyle=None,
            markersize=bordersize,
            linewidth=0,
        )
    return ax


def _triangle_limits(collection, corners: np.ndarray, trans_data):
    """``PolyCollection.get_datalim`` for triangles in data coordinates, from their corners
    at once: the same box (extents and smallest positive values) as matplotlib's walk over
    the 56,588 paths one by one (~0.13 s per flatmap). Anything else: matplotlib's own."""
    from matplotlib.transforms import Bbox

    plain = not np.any(collection.get_offsets()) and not len(collection.get_transforms())
    if not plain or not (collection.get_transform() - trans_data).is_affine:
        return type(collection).get_datalim(collection, trans_data)
    data_trf = (collection.get_transform() - trans_data).get_affine()
    box = Bbox.null()
    box.update_from_data_xy(data_trf.transform(corners.reshape(-1, 2)), ignore=True)
    return box


def suitpy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("suitpy")
    except PackageNotFoundError:
        return "not installed"


def _suit_labels() -> np.ndarray:
    from ..io.atlases import load_atlas

    return load_atlas("suit_cerebellar").data


def cerebellar_voxels(img: nib.Nifti1Image) -> int:
    """Non-zero voxels of ``img`` (on the 2 mm template grid) inside SUIT's lobules."""
    data = np.nan_to_num(np.asanyarray(img.dataobj))
    labels = _suit_labels()
    if data.shape != labels.shape:
        return 0
    return int(np.count_nonzero((data != 0) & (labels > 0)))


def is_cerebellar_roi(roi_img: nib.Nifti1Image | None) -> bool:
    if roi_img is None:
        return False
    roi = np.asanyarray(roi_img.dataobj) != 0
    n = int(roi.sum())
    return n > 0 and cerebellar_voxels(roi_img) >= CEREBELLAR_ROI_SHARE * n


@figure
def flatmap_figure(
    img: nib.Nifti1Image,
    title: str,
    vmax: float | None = None,
    cmap: str = "autumn",
    caption: str = "",
) -> Figure:
    """The non-zero part of ``img`` on the SUIT flatmap, lobule borders in black."""

    def draw(fig):
        import matplotlib.pyplot as plt

        fm = suit_flatmap()
        fig.set_size_inches(5.6, 4.4)
        values = fm.vol_to_surf(
            finite_image(img), space=SUIT_SPACE, ignore_zeros=True, stats="nanmean"
        )[:, 0]
        reached = bool(np.isfinite(values).any())
        top = vmax or (float(np.nanmax(np.abs(values))) if reached else 0.0) or 1.0
        ax = fig.add_axes([0.0, 0.02, 0.86, 0.96])
        plt.sca(ax)
        fm.plot(
            values,
            cmap=cmap,
            cscale=[0.0, top],
            new_figure=False,
            colorbar=False,
            bordersize=1.2,
            render="matplotlib",
        )
        if not reached:  # e.g. voxels in white matter or the nuclei only: say so
            ax.text(
                0.5,
                0.02,
                "no significant voxel reaches the cortical surface",
                transform=ax.transAxes,
                ha="center",
                fontsize=9,
                color="#8a1a1a",
            )
        bar = fig.add_axes([0.88, 0.25, 0.03, 0.5])
        fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(0.0, top), cmap), cax=bar)
        bar.tick_params(labelsize=8)

    return render_figure(title, draw, caption)


CAPTION = (
    "SUIT flatmap of the cerebellar cortex (Diedrichsen & Zotow 2015; SUITPy "
    "{version}): the map sampled between the white and pial surfaces in "
    "MNI152NLin6Asym (mean of the significant samples per vertex); black dots: lobule "
    "borders. A voxel off the cortical sheet (white matter, nuclei) does not show here."
)


def caption() -> str:
    return CAPTION.format(version=suitpy_version())
