"""The version, written once: read by the build (pyproject.toml, ``dynamic``) and by every
module that records it (sidecars, reports, the reuse digest). Nothing imports the package
``__init__`` for it."""

__version__ = "0.1.0"
