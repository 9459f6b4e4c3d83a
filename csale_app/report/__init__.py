"""Self-contained HTML report (inline CSS, base64 figures, no external resources)."""

from .build import build_report, render_index, write_studyset_pages

__all__ = ["build_report", "render_index", "write_studyset_pages"]
