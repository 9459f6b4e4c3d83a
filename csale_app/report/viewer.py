"""Interactive slice viewer (nilearn's ``view_img``, brainsprite) that works offline.

nilearn writes a full HTML page with jQuery and brainsprite embedded in ``<script>`` blocks
(from its package data, no CDN) and the slices as base64 PNG sprites. The report puts that
page into an ``<iframe srcdoc=...>`` (escaped by Jinja2), so its script runs in its own frame
and the report itself has no ``<script>``. A page that would reference an external address
is refused (the report shows a notice instead).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from .figure_cache import cached

LOG = logging.getLogger(__name__)
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)|https?://""", re.I)


@dataclass
class Viewer:
    title: str
    html: str = ""  # the standalone page (placed in srcdoc)
    width: int = 600
    height: int = 400
    error: str = ""
    caption: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.html)


def _payload(v: Viewer) -> dict | None:
    return {"html": v.html, "width": v.width, "height": v.height} if v.ok else None


def _from_payload(payload: dict, page: dict) -> Viewer:
    html = payload["html"]
    if not isinstance(html, str) or not html or EXTERNAL.search(html):
        raise ValueError("not a stored offline viewer page")
    return Viewer(
        page["title"],
        html,
        int(payload["width"]),
        int(payload["height"]),
        caption=page["caption"] or "",
    )


def _pending(page: dict) -> Viewer:
    return Viewer(page["title"], caption=page["caption"] or "")


def _fill(placeholder: Viewer, built: Viewer) -> None:
    placeholder.html, placeholder.width, placeholder.height = built.html, built.width, built.height
    placeholder.error = built.error


SPRITE = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
LARGE_SPRITE = 100_000  # base64 characters


def _grey_jpeg(b64: str) -> str | None:
    """A grey-level PNG sprite (the template behind the map) as a JPEG data URI, else None."""
    import base64
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    rgb = np.asarray(img.convert("RGB"))
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        return None  # colour (the map itself): kept lossless
    out = io.BytesIO()
    img.convert("L").save(out, format="JPEG", quality=85, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def compact_sprites(html: str) -> str:
    """Re-encode the viewer's large grey background sprite (about 1 MB as PNG, the same
    template in every viewer) as a JPEG of about a fifth of the size; the coloured map
    sprite stays PNG, so the values it shows are exact."""

    def swap(m):
        if len(m.group(1)) < LARGE_SPRITE:
            return m.group(0)
        return _grey_jpeg(m.group(1)) or m.group(0)

    return SPRITE.sub(swap, html)


@cached(_payload, _from_payload, _pending, _fill)  # built once per content (figure_cache)
def viewer(
    img: nib.Nifti1Image,
    title: str,
    cut_coords=None,
    vmax: float | None = None,
    cmap: str = "autumn",
    caption: str = "",
) -> Viewer:
    """A brainsprite viewer of a (thresholded, non-negative) map on the template."""
    from nilearn.plotting import view_img

    from .figures import background_image, finite_image

    try:
        data = finite_image(img)
        top = vmax or float(np.max(np.abs(np.asanyarray(data.dataobj)))) or 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            view = view_img(
                data,
                bg_img=background_image(),
                cut_coords=cut_coords,
                threshold=1e-6,
                cmap=cmap,
                symmetric_cmap=False,
                vmin=0,
                vmax=top,
                black_bg=True,
                dim=0,
                title=None,
                width_view=640,
                draw_cross=True,
                annotate=True,
                resampling_interpolation="nearest",
            )
        html = compact_sprites(view.get_standalone())
        if EXTERNAL.search(html):
            raise ValueError("nilearn's viewer page references an external address")
        return Viewer(title, html, int(view.width), int(view.height), caption=caption)
    except Exception as exc:  # a viewer must never break the report
        LOG.warning("report: viewer '%s' failed: %s: %s", title, type(exc).__name__, exc)
        return Viewer(
            title, error=f"viewer could not be built ({type(exc).__name__}: {exc})", caption=caption
        )
