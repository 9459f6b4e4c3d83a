"""Self-contained HTML report (inline CSS, base64 figures, no external resources)."""

__all__ = ["build_report", "render_index", "write_studyset_pages"]


def __getattr__(name: str):
    # lazily: importing a light submodule (report.forked) must not import the plotting stack
    if name in __all__:
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
