"""csale_app: ALE, C-SALE and MACM coordinate-based meta-analysis as a BIDS App.

``from csale_app import ALE, CSALE, MACM`` gives the Python API (:mod:`csale_app.api`);
the estimators are imported on first use, so ``csale-app --version`` stays fast.
"""

from ._version import __version__

__all__ = ["ALE", "CSALE", "MACM", "__version__"]


def __getattr__(name: str):
    if name in ("ALE", "CSALE", "MACM"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'csale_app' has no attribute {name!r}")
