"""Interactive slice viewer (nilearn's ``view_img``, brainsprite) that works offline.

nilearn writes a full HTML page with jQuery and brainsprite embedded in ``<script>`` blocks
(from its package data, no CDN) and the slices as base64 PNG sprites. The report puts that
page into an ``<iframe srcdoc=...>`` (escaped by Jinja2), so its script runs in its own frame
and the report itself has no ``<script>``. A page that would reference an external address
is refused (the report shows a notice instead).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import pickle
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
SPRITES_KEPT = 4  # sprites kept per process (the template's is the same in every viewer)


@functools.lru_cache(maxsize=SPRITES_KEPT)
def _grey_jpeg(b64: str) -> str | None:
    """A grey-level PNG sprite (the template behind the map) as a JPEG data URI, else None
    (kept per process: the template's is the same in every viewer)."""
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


_SPRITES: dict[bytes, bytes] = {}  # digest of a sprite's inputs -> its PNG bytes


def _sprite_key(data, vmax, vmin, mask, cmap, fmt, radiological) -> bytes | None:
    """A digest of everything nilearn's ``_save_sprite`` draws from, or None where an input
    is not a (masked) array or cannot be pickled (then the sprite is drawn, not kept)."""
    from matplotlib.colors import Colormap

    digest = hashlib.sha256()
    for array in (data, mask):
        if array is None:
            digest.update(b"none")
            continue
        if type(array) is np.ma.MaskedArray:  # the template: its values, mask, fill value
            parts = (np.ma.getdata(array), np.ma.getmaskarray(array))
            digest.update(repr(array.fill_value).encode())
        elif type(array) is np.ndarray:
            parts = (array,)
        else:
            return None
        for part in parts:
            part = np.ascontiguousarray(part)
            digest.update(repr((part.dtype.str, part.shape)).encode())
            digest.update(part.data)
    if isinstance(cmap, Colormap):  # what imsave maps values through (not its cache state)
        table = np.asarray(cmap(np.arange(cmap.N)), np.float64)
        ends = (cmap.get_bad(), cmap.get_under(), cmap.get_over())
        cmap = (type(cmap).__name__, cmap.N, table.tobytes(), np.asarray(ends).tobytes())
    elif not isinstance(cmap, str):
        return None
    try:
        digest.update(pickle.dumps((vmax, vmin, cmap, fmt, radiological), protocol=4))
    except Exception:
        return None
    return digest.digest()


@contextlib.contextmanager
def _sprites_kept():
    """While a viewer is built, nilearn's sprites are drawn once per content and process:
    the template's sprite (~0.15 s of PNG encoding, the same in every viewer) is drawn by
    the report process's warm-up, before the run's outputs exist (:func:`warm_up`)."""
    try:
        from nilearn.plotting import html_stat_map
    except ImportError:
        yield
        return
    original = html_stat_map._save_sprite

    def save(
        data, output_sprite, vmax, vmin, mask=None, cmap="Greys", format="png", radiological=False
    ):
        key = _sprite_key(data, vmax, vmin, mask, cmap, format, radiological)
        if key is not None and key in _SPRITES:
            output_sprite.write(_SPRITES[key])
            return None  # nilearn's viewer does not use the returned sprite
        start = output_sprite.tell()
        sprite = original(data, output_sprite, vmax, vmin, mask, cmap, format, radiological)
        if key is not None:
            if len(_SPRITES) >= SPRITES_KEPT:
                _SPRITES.pop(next(iter(_SPRITES)))
            _SPRITES[key] = output_sprite.getvalue()[start:]
        return sprite

    html_stat_map._save_sprite = save
    try:
        yield
    finally:
        html_stat_map._save_sprite = original


def warm_up() -> None:
    """Draw the template's sprite and its JPEG now, on an empty map (the report process's
    warm-up, so the drawing copies it forks start with them); raises what nilearn raises."""
    from .figures import background_image

    bg = background_image()
    _view(nib.Nifti1Image(np.zeros(bg.shape[:3], np.float32), bg.affine), None, None, "autumn")


def _view(img: nib.Nifti1Image, cut_coords, vmax: float | None, cmap: str):
    """nilearn's brainsprite page of ``img`` on the template (sprites compacted), and the
    view (its width and height)."""
    from nilearn.plotting import view_img

    from .figures import background_image, finite_image

    data = finite_image(img)
    top = vmax or float(np.max(np.abs(np.asanyarray(data.dataobj)))) or 1.0
    with warnings.catch_warnings(), _sprites_kept():
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
    return compact_sprites(view.get_standalone()), view


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
    try:
        html, view = _view(img, cut_coords, vmax, cmap)
        if EXTERNAL.search(html):
            raise ValueError("nilearn's viewer page references an external address")
        return Viewer(title, html, int(view.width), int(view.height), caption=caption)
    except Exception as exc:  # a viewer must never break the report
        LOG.warning("report: viewer '%s' failed: %s: %s", title, type(exc).__name__, exc)
        return Viewer(
            title, error=f"viewer could not be built ({type(exc).__name__}: {exc})", caption=caption
        )
