"""Report figures: nilearn/matplotlib (Agg) rendered to base64 PNG data URIs.

Every public ``*_figure`` function returns a :class:`Figure`; a figure that fails is logged
on the ``csale_app`` logger and comes back with ``error`` set (the page shows a notice),
never raised.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import logging
import warnings
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from .figure_cache import cached  # noqa: E402

LOG = logging.getLogger(__name__)
DPI = 80
COLOURS = 256
PNG_URI = "data:image/png;base64,"
PNG_LEVEL = 6  # zlib level of the figures' PNGs


@dataclass
class Figure:
    title: str
    uri: str = ""  # data:image/png;base64,...
    error: str = ""
    caption: str = ""
    attrs: dict = field(default_factory=dict)  # data-* attributes (e.g. the peak shown)

    @property
    def ok(self) -> bool:
        return bool(self.uri)


def to_data_uri(fig) -> str:
    """The figure as a PNG data URI, reduced to a palette of at most ``COLOURS`` colours
    (a third to a half of the bytes of a full-colour PNG for these maps on a black
    background; colour bars keep enough steps to read).

    The pixels are Agg's own buffer, drawn at ``DPI`` (what ``savefig(dpi=DPI)`` draws,
    pixel for pixel), handed to Pillow without matplotlib's PNG round trip; zlib level 6
    instead of Pillow's ``optimize`` (level 9) costs under 1% of the bytes."""
    from PIL import Image

    fig.set_dpi(DPI)
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    rgba = Image.frombuffer("RGBA", (width, height), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    img = rgba.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    # no metadata: matplotlib's PNG writer would embed its web address ("Software")
    img.save(out, format="PNG", compress_level=PNG_LEVEL)
    return PNG_URI + base64.b64encode(out.getvalue()).decode("ascii")


@contextlib.contextmanager
def _outlines_without_limits():
    """nilearn's glass brain outlines are ~250 patches per view, and ``Axes.add_patch``
    computes each one's Bezier extents to widen the data limits (most of the time of
    building a glass brain figure's axes); nilearn then sets the view to the outlines'
    bounds from their file, so those limits change no pixel. While a figure is drawn, the
    outlines are added without them (the same pixels: tests/report/test_small_run.py compares).
    Their JSON files (four views, ~15 ms each to parse) are read once per process."""
    try:
        from nilearn.plotting import glass_brain
        from nilearn.plotting.displays import _axes
    except ImportError:
        yield
        return
    original = getattr(_axes, "plot_brain_schematics", None)
    if original is None or getattr(glass_brain, "json", None) is not json:
        yield
        return

    def schematics(ax, direction, **kwargs):
        ax._update_patch_limits = lambda patch: None  # this axes only, this call only
        try:
            return original(ax, direction, **kwargs)
        finally:
            del ax._update_patch_limits

    _axes.plot_brain_schematics = schematics
    glass_brain.json = _SCHEMATICS_JSON
    try:
        yield
    finally:
        _axes.plot_brain_schematics = original
        glass_brain.json = json


class _SchematicsJson:
    """Stands for the ``json`` module in nilearn's ``glass_brain`` while a figure is drawn:
    ``load`` parses each outline file once per process. nilearn only reads the parsed
    outlines (``Path`` copies the points), so sharing them changes nothing."""

    def __init__(self):
        self._parsed: dict[str, object] = {}

    def load(self, file, **kwargs):
        name = getattr(file, "name", None)
        if not isinstance(name, str) or kwargs:
            return json.load(file, **kwargs)
        if name not in self._parsed:
            self._parsed[name] = json.load(file)
        return self._parsed[name]

    def __getattr__(self, attr):  # anything else: the json module's own
        return getattr(json, attr)


_SCHEMATICS_JSON = _SchematicsJson()


def read_outlines() -> None:
    """Parse the glass brain outline files now (the report process's warm-up, so the
    drawing copies it forks start with them parsed)."""
    try:
        from nilearn.plotting.glass_brain import _get_json_and_transform
    except ImportError:
        return
    for direction in "xyz":  # l and r share x's file
        path, _ = _get_json_and_transform(direction)
        with path.open() as file:
            _SCHEMATICS_JSON.load(file)


def render_figure(title: str, draw, caption: str = "") -> Figure:
    """Call ``draw(fig)`` on a new figure and encode it; failures become a notice."""
    fig = None
    try:
        with warnings.catch_warnings(), _outlines_without_limits():
            warnings.simplefilter("ignore")
            fig = plt.figure()
            draw(fig)
            return Figure(title, uri=to_data_uri(fig), caption=caption)
    except Exception as exc:  # a figure must never break the report
        LOG.warning("report: figure '%s' failed: %s: %s", title, type(exc).__name__, exc)
        return Figure(
            title, error=f"figure could not be drawn ({type(exc).__name__}: {exc})", caption=caption
        )
    finally:
        if fig is not None:
            plt.close(fig)


def _payload(fig: Figure) -> dict | None:
    return {"uri": fig.uri} if fig.ok else None


def _from_payload(payload: dict, page: dict) -> Figure:
    uri = payload["uri"]
    if not isinstance(uri, str) or not uri.startswith(PNG_URI):
        raise ValueError("not a PNG data URI")
    return Figure(
        page["title"], uri=uri, caption=page["caption"] or "", attrs=dict(page["attrs"] or {})
    )


def _pending(page: dict) -> Figure:
    return Figure(page["title"], caption=page["caption"] or "", attrs=dict(page["attrs"] or {}))


def _fill(placeholder: Figure, drawn: Figure) -> None:
    placeholder.uri, placeholder.error = drawn.uri, drawn.error


# decorator: a figure is drawn once per content (in parallel when the cache says so)
figure = cached(_payload, _from_payload, _pending, _fill)


@functools.lru_cache(maxsize=1)
def background_image():
    try:
        from ..io.templates import load_t1

        return load_t1()
    except Exception:  # fall back to nilearn's own (offline) template
        from nilearn.datasets import load_mni152_template

        return load_mni152_template(resolution=2)


def finite_image(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.nan_to_num(np.asanyarray(img.dataobj).astype(np.float32))
    return nib.Nifti1Image(data, img.affine)


def is_empty(img: nib.Nifti1Image) -> bool:
    return not np.any(np.nan_to_num(np.asanyarray(img.dataobj)) != 0)


def mm_of(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.atleast_2d(ijk) @ affine[:3, :3].T + affine[:3, 3]


def centre_mm(mask_img: nib.Nifti1Image) -> tuple[float, float, float] | None:
    data = np.asanyarray(mask_img.dataobj) != 0
    if not data.any():
        return None
    return tuple(float(v) for v in mm_of(np.argwhere(data).mean(axis=0), mask_img.affine)[0])


def z_cuts_within(mask_img: nib.Nifti1Image, n: int = 7) -> list[float]:
    """``n`` axial cuts spread over the z extent of a mask (e.g. the cerebellum ROI)."""
    data = np.asanyarray(mask_img.dataobj) != 0
    zs = mm_of(np.argwhere(data), mask_img.affine)[:, 2]
    lo, hi = np.percentile(zs, [8, 92])
    return [float(round(z)) for z in np.linspace(lo, hi, n)]


def z_cuts_for(img: nib.Nifti1Image, n: int = 7) -> list[float]:
    """Axial cuts through the non-zero part of a map (whole brain)."""
    from nilearn.plotting import find_cut_slices

    data = np.nan_to_num(np.asanyarray(img.dataobj))
    if not data.any():
        return [float(z) for z in np.linspace(-40, 60, n)]
    nz = nib.Nifti1Image((data != 0).astype(np.float32), img.affine)
    zs = mm_of(np.argwhere(data != 0), img.affine)[:, 2]
    if np.ptp(zs) < 2 * n:  # small extent: spread around it
        return [float(round(z)) for z in np.linspace(zs.min() - 6, zs.max() + 6, n)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(float(round(z)) for z in find_cut_slices(nz, direction="z", n_cuts=n))


@figure
def glass_brain_figure(
    img: nib.Nifti1Image,
    title: str,
    threshold: float = 1e-6,
    cmap: str = "autumn",
    caption: str = "",
) -> Figure:
    from nilearn.plotting import plot_glass_brain

    def draw(fig):
        fig.set_size_inches(10, 3)
        data = finite_image(img)
        vmax = float(np.max(np.abs(np.asanyarray(data.dataobj)))) or 1.0
        plot_glass_brain(
            data,
            display_mode="lyrz",
            colorbar=True,
            figure=fig,
            threshold=threshold,
            plot_abs=False,
            cmap=cmap,
            vmin=0,
            vmax=vmax,
            symmetric_cbar=False,
            annotate=True,
            title=None,
        )

    return render_figure(title, draw, caption)


@figure
def slices_figure(
    img: nib.Nifti1Image,
    title: str,
    cut_coords=None,
    display_mode: str = "z",
    threshold: float = 1e-6,
    cmap: str = "autumn",
    caption: str = "",
    symmetric: bool = False,
    vmax: float | None = None,
) -> Figure:
    from nilearn.plotting import plot_stat_map

    def draw(fig):
        fig.set_size_inches(10, 2.6 if display_mode == "z" else 3.4)
        data = finite_image(img)
        kw = {} if symmetric else {"vmin": 0, "symmetric_cbar": False}
        if vmax is not None:
            kw["vmax"] = vmax
        plot_stat_map(
            data,
            bg_img=background_image(),
            display_mode=display_mode,
            cut_coords=cut_coords,
            figure=fig,
            threshold=threshold,
            cmap=cmap,
            colorbar=True,
            annotate=True,
            draw_cross=False,
            black_bg=True,
            dim=0,
            **kw,
        )
        fig.set_facecolor("black")

    return render_figure(title, draw, caption)


@figure
def roi_figure(mask_img: nib.Nifti1Image, title: str, caption: str = "") -> Figure:
    """A mask (ROI, MACM seed) on the template: ortho at its centre + axial cuts through it."""
    from nilearn.plotting import plot_roi

    def draw(fig):
        fig.set_size_inches(10, 4.6)
        data = (np.asanyarray(mask_img.dataobj) != 0).astype(np.float32)
        roi = nib.Nifti1Image(data, mask_img.affine)
        if not data.any():
            raise ValueError("the mask is empty")
        bg = background_image()
        ax1 = fig.add_axes([0, 0.5, 1, 0.5])
        ax2 = fig.add_axes([0, 0, 1, 0.5])
        plot_roi(
            roi,
            bg_img=bg,
            display_mode="ortho",
            cut_coords=centre_mm(roi),
            axes=ax1,
            figure=fig,
            colorbar=False,
            cmap="autumn",
            black_bg=True,
            dim=0,
            draw_cross=False,
        )
        plot_roi(
            roi,
            bg_img=bg,
            display_mode="z",
            cut_coords=z_cuts_within(roi),
            axes=ax2,
            figure=fig,
            colorbar=False,
            cmap="autumn",
            black_bg=True,
            dim=0,
        )
        fig.set_facecolor("black")

    return render_figure(title, draw, caption)


@figure
def comparison_figure(
    maps: list[tuple[str, nib.Nifti1Image]], title: str, cut_coords, caption: str = ""
) -> Figure:
    """Thresholded maps in rows, same axial cuts, each on its own colour scale."""
    from nilearn.plotting import plot_stat_map

    def draw(fig):
        n = len(maps)
        fig.set_size_inches(10, 2.4 * n)
        datas = [finite_image(img) for _, img in maps]
        bg = background_image()
        for i, ((name, _), data) in enumerate(zip(maps, datas)):
            vmax = float(np.max(np.abs(np.asanyarray(data.dataobj)))) or 1.0
            ax = fig.add_axes([0, 1 - (i + 1) / n, 1, 1 / n])
            plot_stat_map(
                data,
                bg_img=bg,
                display_mode="z",
                cut_coords=cut_coords,
                axes=ax,
                figure=fig,
                threshold=1e-6,
                cmap="autumn",
                vmin=0,
                vmax=vmax,
                symmetric_cbar=False,
                colorbar=True,
                title=name,
                black_bg=True,
                dim=0,
                draw_cross=False,
            )
        fig.set_facecolor("black")

    return render_figure(title, draw, caption)


@figure
def null_figure(null, title: str, caption: str = "", observed: dict | None = None) -> Figure:
    """Histograms of the null columns (a DataFrame) with the 95th percentile marked."""
    import pandas as pd

    def draw(fig):
        cols = [c for c in null.columns if pd.api.types.is_numeric_dtype(null[c])]
        if not cols:
            raise ValueError("no numeric columns in the null table")
        cols = cols[:6]
        fig.set_size_inches(3.3 * len(cols), 2.6)
        for i, c in enumerate(cols):
            ax = fig.add_subplot(1, len(cols), i + 1)
            v = null[c].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            ax.hist(v, bins=min(50, max(10, len(v) // 20)), color="#4a7ab7")
            if len(v):
                q = float(np.percentile(v, 95))
                ax.axvline(q, color="#c0392b", lw=1.5, label=f"95th pct {q:.4g}")
            if observed and c in observed and observed[c] is not None:
                ax.axvline(
                    observed[c],
                    color="#27ae60",
                    lw=1.5,
                    ls="--",
                    label=f"observed {observed[c]:.4g}",
                )
            ax.set_title(str(c), fontsize=9)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()

    return render_figure(title, draw, caption)


@figure
def box_figure(values, title: str, xlabel: str, caption: str = "") -> Figure:
    """A horizontal box plot of ``values`` (NaN left out) with every value as a dot."""

    def draw(fig):
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if not len(v):
            raise ValueError("no finite values to plot")
        fig.set_size_inches(6, 1.9)
        ax = fig.add_subplot(1, 1, 1)
        ax.boxplot(v, vert=False, widths=0.5, showfliers=False, medianprops={"color": "#c0392b"})
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(v))  # fixed: same pixels
        ax.scatter(v, 1 + jitter, s=10, color="#4a7ab7", alpha=0.7, zorder=3)
        ax.set_yticks([])
        ax.set_xlabel(xlabel, fontsize=9)
        ax.tick_params(labelsize=8)
        fig.tight_layout()

    return render_figure(title, draw, caption)


def _binary(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.Nifti1Image(
        (np.nan_to_num(np.asanyarray(img.dataobj)) != 0).astype(np.float32), img.affine
    )


@figure
def logp_figure(
    logp_img: nib.Nifti1Image,
    clusters_img: nib.Nifti1Image | None,
    title: str,
    cut_coords=None,
    display_mode: str = "z",
    vmax: float | None = None,
    threshold: float = -np.log10(0.05),
    caption: str = "",
    outline: str = "#00e5ff",
) -> Figure:
    """-log10 p on the template (where p < 10^-threshold), significant clusters outlined in
    ``outline`` (a colour not in the -log10 p colour map)."""
    from nilearn.plotting import plot_stat_map

    def draw(fig):
        fig.set_size_inches(10, 2.6 if display_mode == "z" else 3.4)
        data = finite_image(logp_img)
        top = vmax or float(np.max(np.asanyarray(data.dataobj))) or 1.0
        display = plot_stat_map(
            data,
            bg_img=background_image(),
            display_mode=display_mode,
            cut_coords=cut_coords,
            figure=fig,
            threshold=threshold,
            cmap="autumn",
            vmin=0,
            vmax=top,
            symmetric_cbar=False,
            colorbar=True,
            annotate=True,
            draw_cross=False,
            black_bg=True,
            dim=0,
        )
        if clusters_img is not None and not is_empty(clusters_img):
            display.add_contours(
                _binary(clusters_img), levels=[0.5], colors=[outline], linewidths=1.6
            )
        fig.set_facecolor("black")

    return render_figure(title, draw, caption)


@figure
def peak_figure(
    img: nib.Nifti1Image,
    title: str,
    peak: tuple[float, float, float],
    caption: str = "",
    clusters_img: nib.Nifti1Image | None = None,
    vmax: float | None = None,
    threshold: float = 1e-6,
    cmap: str = "autumn",
    attrs: dict | None = None,
) -> Figure:
    """Ortho view cut at ``peak`` (mm), a crosshair at the peak; clusters outlined if given."""
    from nilearn.plotting import plot_stat_map

    def draw(fig):
        fig.set_size_inches(10, 3.4)
        data = finite_image(img)
        top = vmax or float(np.max(np.abs(np.asanyarray(data.dataobj)))) or 1.0
        display = plot_stat_map(
            data,
            bg_img=background_image(),
            display_mode="ortho",
            cut_coords=peak,
            figure=fig,
            threshold=threshold,
            cmap=cmap,
            vmin=0,
            vmax=top,
            symmetric_cbar=False,
            colorbar=True,
            annotate=True,
            draw_cross=True,
            black_bg=True,
            dim=0,
        )
        if clusters_img is not None and not is_empty(clusters_img):
            display.add_contours(
                _binary(clusters_img), levels=[0.5], colors=["#00e5ff"], linewidths=1.4
            )
        fig.set_facecolor("black")

    fig = render_figure(title, draw, caption)
    fig.attrs = dict(attrs or {})
    return fig


FOCI_COLUMNS = (
    "x_mni",
    "y_mni",
    "z_mni",
    "x",
    "y",
    "z",
    "experiment_id",
    "study_id",
    "in_template",
    "i",
    "j",
    "k",
)  # what foci_figure reads


@figure
def foci_figure(
    foci, title: str, roi_img: nib.Nifti1Image | None = None, caption: str = ""
) -> Figure:
    """Glass brain of the input foci (MNI), one colour per experiment; with an ROI, foci
    outside it are grey and the ROI is outlined."""
    from nilearn.plotting import plot_glass_brain

    def draw(fig):
        fig.set_size_inches(10, 3)
        df = foci
        if "in_template" in df:
            df = df[df["in_template"].astype(str).str.lower().isin(("true", "1"))]
        cols = ["x_mni", "y_mni", "z_mni"] if "x_mni" in df else ["x", "y", "z"]
        xyz = df[cols].to_numpy(dtype=float)
        exp = (
            df["experiment_id"].astype(str) if "experiment_id" in df else df["study_id"].astype(str)
        )
        codes = exp.astype("category").cat.codes.to_numpy()
        palette = plt.get_cmap("tab20")(np.arange(20))
        colours = palette[codes % 20]
        inside = np.ones(len(df), bool)
        if roi_img is not None and {"i", "j", "k"} <= set(df.columns):
            mask = np.asanyarray(roi_img.dataobj) != 0
            ijk = df[["i", "j", "k"]].to_numpy(dtype=int)
            ok = np.all((ijk >= 0) & (ijk < mask.shape), axis=1)
            inside = np.zeros(len(df), bool)
            inside[ok] = mask[tuple(ijk[ok].T)]
            colours[~inside] = (0.6, 0.6, 0.6, 0.5)
        display = plot_glass_brain(None, display_mode="lyrz", figure=fig, annotate=True, title=None)
        order = np.argsort(inside, kind="stable")  # grey first, coloured on top
        if len(xyz):
            display.add_markers(
                xyz[order], marker_color=colours[order], marker_size=7, linewidths=0
            )
        if roi_img is not None:
            display.add_contours(_binary(roi_img), levels=[0.5], colors=["#2d5fa3"], linewidths=1.2)

    return render_figure(title, draw, caption)
