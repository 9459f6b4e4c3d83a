"""Build the report from what the pipeline wrote in OUTPUT_DIR: the entry page
OUTPUT_DIR/report.html (summary, one linked row per studyset, methods, references), one
self-contained page per studyset in OUTPUT_DIR/report/, and references.bib.

The report reads files only (see :mod:`.discover`), so it is decoupled from pipeline
internals; ``context`` adds what files do not hold (version, command line, settings, device,
runtime, warnings, per-studyset summaries with the reference database and ROI, reused
studysets). Every string from inputs is escaped by Jinja2's autoescape; figures are base64
PNGs; the interactive viewers are nilearn pages (their JavaScript embedded) inside
``<iframe srcdoc>``; nothing refers to an external address.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import types
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..outputs.atomic import write_text
from . import discover, figure_cache, methods
from .sections import TITLES
from ..records import StudysetSummary
from .studysets import studyset_section
from .tables import Link, Table, fmt, fmt_seconds, kv_table, read_tsv

LOG = logging.getLogger(__name__)
PAGES_DIR = "report"  # OUTPUT_DIR/report/studyset-<S>.html


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("csale_app.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def database_text(db: dict) -> str:
    files = ", ".join(map(str, db.get("files") or [])) or "n/a"
    return (
        f"{db.get('source', 'n/a')}: {files} ({fmt(db.get('n_experiments'))} experiments, "
        f"{fmt(db.get('n_foci'))} foci)"
    )


def summaries_of(context: dict) -> dict[str, StudysetSummary]:
    """This run's studyset summaries (``context["studysets"]``) by label."""
    found = {}
    for s in context.get("studysets") or []:
        if not isinstance(s, StudysetSummary):
            raise TypeError(
                f"report context: a studyset summary is a StudysetSummary, not "
                f"{type(s).__name__} (StudysetSummary.from_json reads one)"
            )
        found[s.label] = s
    return found


def _summary_tables(context: dict, pages: list[Page]) -> list[Table]:
    cmd = context.get("command_line", "")
    run = [
        ("csale_app version", context.get("version", "")),
        ("Command line", " ".join(map(str, cmd)) if isinstance(cmd, (list, tuple)) else cmd),
        ("Device", context.get("device", "")),
        ("Runtime", fmt_seconds(context.get("runtime_s"))),
    ]
    for key in ("input_dir", "output_dir"):
        if key in context:
            run.append((key.replace("_", " ").capitalize(), context[key]))
    by = summaries_of(context)
    dbs = unique_dbs(list(by.values()))
    if dbs:
        run.append(("Reference database", "; ".join(database_text(d) for d in dbs)))
    tables = [kv_table("Run", run)]
    settings = context.get("settings") or {}
    rows = []
    by_page = {p.label: p for p in pages}
    labels = list(by) + [p.label for p in pages if p.label not in by]
    reused = {str(r) for r in context.get("reused") or []}
    for lab in labels:
        s, page = by.get(lab), by_page.get(lab)
        n_exp = s.n_experiments if s is not None else page.n_experiments if page else None
        rows.append(
            [
                Link(lab, page.href) if page else lab,
                fmt(n_exp),
                fmt(s.n_foci if s is not None else None),
                ", ".join(s.ran() if s is not None else []) or ("see its page" if page else "none"),
                page.clusters if page else "none",
                "; ".join(s.skip_reasons() if s is not None else []) or "none",
                "yes" if lab in reused else "no",
            ]
        )
    tables.append(
        Table(
            "Studysets",
            [
                "Studyset",
                "Experiments analysed",
                "Foci",
                "Analyses run",
                "Significant clusters",
                "Skipped (reason)",
                "Reused",
            ],
            rows,
            note="Each studyset's results are on its own page (the link).",
        )
    )
    if settings:
        tables.append(
            kv_table(
                "Settings",
                [(k, "not set" if v is None else v) for k, v in sorted(settings.items())],
            )
        )
    return tables


def unique_dbs(summaries: list[StudysetSummary]) -> list[dict]:
    out, seen = [], set()
    for s in summaries:
        db = s.database
        if db is not None:
            key = database_text(db)
            if key not in seen:
                seen.add(key)
                out.append(db)
    return out


@dataclass
class Page:
    """One studyset's page: where it is and the key numbers the entry page shows."""

    label: str
    href: str  # relative to OUTPUT_DIR/report.html
    n_experiments: str | None
    clusters: str  # "ALE 2; C-SALE 1; MACM clusters (ALE) 3"
    talairach: bool
    kinds: set
    size_bytes: int = 0


def page_path(output_dir: Path, label: str) -> Path:
    return Path(output_dir) / PAGES_DIR / f"studyset-{label}.html"


def _cluster_counts(ss: discover.Studyset) -> str:
    """Significant clusters per analysis, from the cluster tables (rows = clusters)."""
    parts = []
    for where, analyses in [("", ss.analyses)] + [
        (f"MACM {m.name} ", m.analyses) for m in ss.macms
    ]:
        for an in analyses:
            path = an.tables.get("clusters")
            if path is None:
                continue
            try:
                n = len(read_tsv(path))
            except (OSError, ValueError):
                n = "n/a"
            parts.append(f"{where}{TITLES.get(an.meta, an.meta)} {n}")
    return "; ".join(parts) or "none"


def _render(env, **kw) -> str:
    from .._version import __version__

    kw.setdefault("generated", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    kw["ctx"] = {"version": __version__, **kw.get("ctx", {})}
    return env.get_template("report.html.j2").render(**kw)


def write_studyset_pages(output_dir: Path, context: dict) -> list[Page]:
    """Build, render and write each studyset's page in turn (one in memory at a time)."""
    env = _environment()
    summaries = summaries_of(context)
    reused = {str(r) for r in context.get("reused") or []}
    pages = []
    for ss in discover.find_results(Path(output_dir)):
        sec, tal = studyset_section(ss, summaries.get(ss.label), ss.label in reused)
        kinds = {a.meta for a in ss.analyses} | ({"macm"} if ss.macms else set())
        n_exp = next((v for k, v in sec.info if k == "Experiments analysed"), None)
        path = page_path(output_dir, ss.label)
        figure_cache.draw_pending()  # the page's figures, drawn together (in parallel)
        html = _render(
            env,
            page="studyset",
            ctx=context,
            sections=[sec],
            warnings=[],
            reused=[],
            title=f"Studyset {ss.label}",
        )
        write_text(path, html)
        href = f"{PAGES_DIR}/{quote(path.name)}"
        pages.append(
            Page(ss.label, href, n_exp, _cluster_counts(ss), tal, kinds, path.stat().st_size)
        )
        del sec, html
    return pages


def render_index(output_dir: Path, context: dict, pages: list[Page]) -> str:
    """The entry page: summary (one row per studyset, linked), methods, references."""
    from ..io.atlases import atlas_credits

    summaries = summaries_of(context)
    settings = context.get("settings") or {}
    facts = methods.Facts(
        version=str(context.get("version", "")),
        settings=settings if isinstance(settings, dict) else {},
        analyses=set().union(*[p.kinds for p in pages]) if pages else set(),
        talairach=any(p.talairach for p in pages),
        device=str(context.get("device", "")),
        studysets=[summaries[p.label] for p in pages if p.label in summaries],
    )
    return _render(
        _environment(),
        page="index",
        ctx=context,
        title="csale_app report",
        summary_tables=_summary_tables(context, pages),
        warnings=[str(w) for w in dict.fromkeys(context.get("warnings") or [])],
        reused=sorted({str(r) for r in context.get("reused") or []}),
        pages=pages,
        methods=methods.methods_paragraphs(facts),
        references=methods.reference_list(),
        atlases=atlas_credits(),
    )


def _remove_stale_pages(output_dir: Path) -> None:
    """Pages of studysets whose folder is gone (removed by hand, --overwrite) would
    mislead. A page whose folder exists stays, also if this report did not build it (a
    concurrent job-array task that found the folder after this one looked)."""
    folder = Path(output_dir) / PAGES_DIR
    for old in folder.glob("studyset-*.html") if folder.is_dir() else []:
        if not (Path(output_dir) / old.stem).is_dir():
            with contextlib.suppress(OSError):
                old.unlink()


@contextlib.contextmanager
def _no_forced_collections():
    """nilearn's ``safe_get_data`` runs ``gc.collect()`` for every image it reads (to bound
    the memory of large 4-D images): about 60 full collections per report, most of its
    time after the drawing itself. The report's images are 3-D maps of a few MB, so while
    it is built those calls (in nilearn's module only) do nothing; Python's automatic
    collection stays on."""
    try:
        from nilearn._utils import niimg
    except ImportError:
        yield
        return
    saved = getattr(niimg, "gc", None)
    if saved is None or not hasattr(saved, "collect"):
        yield
        return
    niimg.gc = types.SimpleNamespace(collect=lambda *args, **kwargs: 0)
    try:
        yield
    finally:
        niimg.gc = saved


MAX_DRAWING_PROCESSES = 4  # a page has about 10-20 figures; more copies gain little


def drawing_processes(context: dict) -> int:
    """Processes that draw figures at once: the run's ``--nprocs`` (default: every CPU this
    process may use), at most :data:`MAX_DRAWING_PROCESSES`."""
    import os

    settings = context.get("settings") if isinstance(context.get("settings"), dict) else {}
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    wanted = settings.get("nprocs")
    wanted = wanted if isinstance(wanted, int) and wanted > 0 else available
    return max(1, min(wanted, available, MAX_DRAWING_PROCESSES))


def build_report(
    output_dir: Path, context: dict | None = None, figure_dir: Path | None = None, drawing=None
) -> Path:
    """Write OUTPUT_DIR/report.html (the entry page), OUTPUT_DIR/report/studyset-<S>.html
    (one self-contained page per studyset) and OUTPUT_DIR/references.bib, each atomically.

    ``figure_dir``: where drawn figures are kept by content (see :mod:`.figure_cache`), so
    a later run that reuses a studyset does not draw its figures again; None keeps them in
    memory for this report only. ``drawing``: a context manager factory around the
    drawing (the CLI's heap freeze), None for none.
    """
    from .._version import __version__

    output_dir = Path(output_dir)
    context = dict(context or {})
    context.setdefault("version", __version__)
    cache = figure_cache.FigureCache(figure_dir, processes=drawing_processes(context))
    # ``drawing`` wraps the figure drawing: the CLI freezes its heap there (cli/run.py),
    # a library call leaves the caller's garbage collector alone; nilearn's forced
    # collections are skipped either way (see _no_forced_collections)
    with (
        (drawing or contextlib.nullcontext)(),
        figure_cache.active(cache),
        _no_forced_collections(),
    ):
        pages = write_studyset_pages(output_dir, context)
    _remove_stale_pages(output_dir)
    write_text(output_dir / "references.bib", methods.bibtex())
    path = write_text(output_dir / "report.html", render_index(output_dir, context, pages))
    pruned = cache.prune()
    LOG.info(
        "report written: %s (%.1f MB) and %d studyset page(s) in %s/ (largest %.1f MB); "
        "figures drawn %d, reused %d%s",
        path,
        path.stat().st_size / 1e6,
        len(pages),
        PAGES_DIR,
        max((p.size_bytes for p in pages), default=0) / 1e6,
        cache.drawn,
        cache.hits,
        f", {pruned} unused stored figure(s) removed" if pruned else "",
    )
    return path
