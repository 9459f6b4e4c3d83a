"""Self-contained HTML report (inline CSS, base64 figures, no external resources)."""

from .build import build_report, render_report

__all__ = ["build_report", "render_report"]
