"""The report's pages in an OUTPUT_DIR: the entry page report.html and one page per studyset
(report/studyset-<S>.html)."""

from __future__ import annotations

from pathlib import Path


def pages(out: Path) -> list[Path]:
    """The entry page first, then every studyset page."""
    out = Path(out)
    return [out / "report.html", *sorted((out / "report").glob("studyset-*.html"))]


def page(out: Path, label: str) -> str:
    return (Path(out) / "report" / f"studyset-{label}.html").read_text(encoding="utf-8")


def text(out: Path) -> str:
    """Every page's HTML, joined (for checks that do not care which page holds a text)."""
    return "\n".join(p.read_text(encoding="utf-8") for p in pages(out))
