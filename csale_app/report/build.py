"""Build OUTPUT_DIR/report.html (+ references.bib) from what the pipeline wrote there.

The report reads files only (see :mod:`.discover`), so it is decoupled from pipeline
internals; ``context`` adds what files do not hold (version, command line, settings, device,
runtime, warnings, per-studyset summaries with the reference database and ROI, reused
studysets). Every string from inputs is escaped by Jinja2's autoescape; figures are base64
PNGs; the interactive viewers are nilearn pages (their JavaScript embedded) inside
``<iframe srcdoc>``; nothing refers to an external address.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from ..outputs.atomic import write_text
from . import discover, figure_cache, methods
from .sections import Section  # noqa: F401  (re-exported)
from .studysets import ran, skipped, studyset_section
from .tables import Table, fmt, fmt_seconds, kv_table  # noqa: F401

LOG = logging.getLogger(__name__)


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("csale_app.report", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def database_text(db: dict) -> str:
    files = ", ".join(map(str, db.get("files") or [])) or "n/a"
    return (f"{db.get('source', 'n/a')}: {files} ({fmt(db.get('n_experiments'))} experiments, "
            f"{fmt(db.get('n_foci'))} foci)")


def _summary_tables(context: dict, found: list[str], counts: dict) -> list[Table]:
    cmd = context.get("command_line", context.get("command", ""))
    run = [("csale_app version", context.get("version", "")),
           ("Command line", " ".join(map(str, cmd)) if isinstance(cmd, (list, tuple)) else cmd),
           ("Device", context.get("device", "")),
           ("Runtime", fmt_seconds(context.get("runtime_s", context.get("runtime_seconds"))))]
    for key in ("input_dir", "output_dir", "started", "finished"):
        if key in context:
            run.append((key.replace("_", " ").capitalize(), context[key]))
    summaries = [s for s in context.get("studysets") or [] if isinstance(s, dict)]
    dbs = unique_dbs(summaries)
    if dbs:
        run.append(("Reference database", "; ".join(database_text(d) for d in dbs)))
    if isinstance(context.get("inputs"), dict):
        run += list(context["inputs"].items())
    elif context.get("inputs"):
        run.append(("Inputs", context["inputs"]))
    tables = [kv_table("Run", run)]
    settings = context.get("settings") or {}
    rows = []
    labels = [str(s.get("label", "")) for s in summaries] + \
        [lab for lab in found if lab not in {str(s.get("label", "")) for s in summaries}]
    by = {str(s.get("label", "")): s for s in summaries}
    reused = {str(r) for r in context.get("reused") or []}
    for lab in labels:
        s = by.get(lab, {})
        n_exp = s.get("n_experiments", counts.get(lab))
        rows.append([lab, fmt(n_exp), fmt(s.get("n_foci")),
                     ", ".join(ran(s)) or ("see below" if lab in found else "none"),
                     "; ".join(skipped(s)) or "none", "yes" if lab in reused else "no"])
    tables.append(Table("Studysets", ["Studyset", "Experiments analysed", "Foci",
                                      "Analyses run", "Skipped (reason)", "Reused"], rows))
    if settings:
        tables.append(kv_table("Settings", [(k, "not set" if v is None else v)
                                            for k, v in sorted(settings.items())]))
    return tables


def unique_dbs(summaries: list[dict]) -> list[dict]:
    out, seen = [], set()
    for s in summaries:
        db = s.get("database")
        if isinstance(db, dict):
            key = database_text(db)
            if key not in seen:
                seen.add(key)
                out.append(db)
    return out


def render_report(output_dir: Path, context: dict | None = None) -> str:
    import datetime

    from .._version import __version__
    from ..stats.labels import atlas_credits

    context = dict(context or {})
    context.setdefault("version", __version__)
    studysets = discover.find_studysets(Path(output_dir))
    summaries = {str(s.get("label", "")): s for s in context.get("studysets") or []
                 if isinstance(s, dict)}
    reused = {str(r) for r in context.get("reused") or []}
    sections, talairach, kinds, counts = [], False, set(), {}
    for ss in studysets:
        sec, tal = studyset_section(ss, summaries.get(ss.label, {}), ss.label in reused)
        sections.append(sec)
        talairach |= tal
        kinds |= {a.meta for a in ss.analyses}
        if ss.macms:
            kinds.add("macm")
        counts[ss.label] = next((v for k, v in sec.info if k == "Experiments analysed"), None)
    settings = context.get("settings") or {}
    facts = methods.Facts(
        version=str(context["version"]), settings=settings if isinstance(settings, dict) else {},
        analyses=kinds, talairach=talairach, device=str(context.get("device", "")),
        studysets=[summaries.get(ss.label, {"label": ss.label}) for ss in studysets])
    return _environment().get_template("report.html.j2").render(
        ctx=context,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        summary_tables=_summary_tables(context, [s.label for s in studysets], counts),
        warnings=[str(w) for w in dict.fromkeys(context.get("warnings") or [])],
        reused=sorted(reused),
        sections=sections,
        methods=methods.methods_paragraphs(facts),
        references=methods.reference_list(),
        atlases=atlas_credits(),
    )


def build_report(output_dir: Path, context: dict | None = None,
                 figure_dir: Path | None = None) -> Path:
    """Write OUTPUT_DIR/report.html (atomically) and OUTPUT_DIR/references.bib.

    ``figure_dir``: where drawn figures are kept by content (see :mod:`.figure_cache`), so
    a later run that reuses a studyset does not draw its figures again; None keeps them in
    memory for this report only.
    """
    output_dir = Path(output_dir)
    # nilearn calls gc.collect() for every image it reads (dozens per figure); with a large
    # heap (pandas, matplotlib, nilearn's own modules) that dominates the report's time.
    # Importing the plotting stack first and freezing every object that exists then keeps
    # those collections short; objects made while building are still collected.
    import matplotlib.pyplot  # noqa: F401
    import nilearn.plotting  # noqa: F401

    cache = figure_cache.FigureCache(figure_dir)
    gc.collect()
    gc.freeze()
    try:
        with figure_cache.active(cache):
            html = render_report(output_dir, context)
    finally:
        gc.unfreeze()
    write_text(output_dir / "references.bib", methods.bibtex())
    path = write_text(output_dir / "report.html", html)
    pruned = cache.prune()
    LOG.info("report written: %s (%.1f MB); figures drawn %d, reused %d%s", path,
             path.stat().st_size / 1e6, cache.drawn, cache.hits,
             f", {pruned} unused stored figure(s) removed" if pruned else "")
    return path
