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
    return Viewer(page["title"], html, int(payload["width"]), int(payload["height"]),
                  caption=page["caption"] or "")


@cached(_payload, _from_payload)  # built once per content (see figure_cache)
def viewer(img: nib.Nifti1Image, title: str, cut_coords=None, vmax: float | None = None,
           cmap: str = "autumn", caption: str = "") -> Viewer:
    """A brainsprite viewer of a (thresholded, non-negative) map on the template."""
    from nilearn.plotting import view_img

    from .figures import _background, _finite

    try:
        data = _finite(img)
        top = vmax or float(np.max(np.abs(np.asanyarray(data.dataobj)))) or 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            view = view_img(data, bg_img=_background(), cut_coords=cut_coords, threshold=1e-6,
                            cmap=cmap, symmetric_cmap=False, vmin=0, vmax=top, black_bg=True,
                            dim=0, title=None, width_view=640, draw_cross=True, annotate=True,
                            resampling_interpolation="nearest")
        html = view.get_standalone()
        if EXTERNAL.search(html):
            raise ValueError("nilearn's viewer page references an external address")
        return Viewer(title, html, int(view.width), int(view.height), caption=caption)
    except Exception as exc:  # a viewer must never break the report
        LOG.warning("report: viewer '%s' failed: %s: %s", title, type(exc).__name__, exc)
        return Viewer(title, error=f"viewer could not be built ({type(exc).__name__}: {exc})",
                      caption=caption)
