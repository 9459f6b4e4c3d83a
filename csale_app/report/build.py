"""Build OUTPUT_DIR/report.html (+ references.bib) from what the pipeline wrote there.

The report reads files only (see :mod:`.discover`), so it is decoupled from pipeline
internals; ``context`` adds what files do not hold (version, command line, settings, device,
runtime, warnings, per-studyset summaries). Every string from inputs is escaped by Jinja2's
autoescape; figures are base64 PNGs; the page has no script and no external address.
"""

from __future__ import annotations

import gc
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..outputs.atomic import write_text
from . import discover, figures, methods

LOG = logging.getLogger("csale_app")
MAX_ROWS = 500
TITLES = {"ale": "ALE", "csale": "C-SALE"}
THRESHOLDED = "stat-z_desc-thresholded"
BASERATE = "stat-prob_desc-baserate"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    kv: bool = False  # key/value table: no header row


@dataclass
class Section:
    id: str
    title: str
    info: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    figures: list = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    details: list[Table] = field(default_factory=list)  # collapsed tables
    children: list["Section"] = field(default_factory=list)


def anchor(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_-]", "_", str(p)) for p in parts)


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "n/a"
        if float(v).is_integer() and abs(v) < 1e12:
            return str(int(v))
        return f"{float(v):.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return str(v)


def fmt_seconds(s) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return fmt(s)
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return (f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s" if m
            else f"{s:.1f} s")


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a", "", "NaN"])


def df_table(df: pd.DataFrame, title: str, max_rows: int = MAX_ROWS, note: str = "") -> Table:
    rows = [[fmt(v) for v in r] for r in df.head(max_rows).itertuples(index=False)]
    if len(df) > max_rows:
        note = (note + " " if note else "") + f"First {max_rows} of {len(df)} rows shown; " \
            "the full table is in the TSV file."
    return Table(title, [str(c) for c in df.columns], rows, note)


def kv_table(title: str, items) -> Table:
    return Table(title, ["", ""], [[str(k), fmt(v)] for k, v in items], kv=True)


def _safe(section: Section, what: str, fn):
    """Run one part of a section; a failure is logged and shown as a notice."""
    try:
        return fn()
    except Exception as exc:
        LOG.warning("report: %s failed: %s: %s", what, type(exc).__name__, exc)
        section.notices.append(f"{what} could not be shown ({type(exc).__name__}: {exc}).")
        return None


def _load(path: Path | None):
    import nibabel as nib

    return None if path is None else nib.load(str(path))


# ---- analysis sections ----------------------------------------------------------------------
def _cuts(img, roi_img):
    return figures.z_cuts_within(roi_img) if roi_img is not None else figures.z_cuts_for(img)


def _observed(an: discover.Analysis, clusters: pd.DataFrame | None) -> dict:
    obs = {}
    p = an.map("stat-ale")
    if p is not None:
        v = float(np.nanmax(np.asanyarray(_load(p).dataobj)))
        obs.update({"max_ale": v, "max": v, "max_stat": v})
    if clusters is not None and len(clusters) and "size_voxels" in clusters:
        v = float(clusters["size_voxels"].max())
        obs.update({"max_cluster_size": v, "max_size": v, "size": v})
    return obs


def analysis_section(an: discover.Analysis, parent_id: str, roi_img, run_info) -> Section:
    title = TITLES.get(an.meta, an.meta)
    sec = Section(anchor(parent_id, an.meta), title)
    side = an.sidecar()
    for key in ("Method", "NumberOfExperiments", "NumberOfFoci", "NumberOfSubjects",
                "NullIterations", "ClusterFormingThreshold", "Connectivity", "Device"):
        if key in side:
            v = side[key]
            sec.info.append((key, ", ".join(f"{k} {fmt(x)}" for k, x in v.items())
                             if isinstance(v, dict) else fmt(v)))
    if isinstance(run_info, dict):
        sec.info += [(str(k), fmt(v)) for k, v in run_info.items()
                     if isinstance(v, (int, float, str, bool, np.number))]

    thr_img = _safe(sec, "the thresholded map", lambda: _load(an.map(THRESHOLDED)))
    if an.map(THRESHOLDED) is None:
        sec.notices.append("No thresholded map was written for this analysis.")
    elif thr_img is not None and figures.is_empty(thr_img):
        sec.notices.append("No cluster survived the threshold (thresholded map is empty).")
        z = an.map("stat-z")
        if z is not None:
            sec.figures.append(figures.glass_brain_figure(
                _load(z), f"{title}: uncorrected z > 3.09 (orientation only)", threshold=3.09,
                caption="Not corrected for multiple comparisons."))
    elif thr_img is not None:
        sec.figures.append(figures.glass_brain_figure(
            thr_img, f"{title}: thresholded z map (glass brain)"))
        cuts = _safe(sec, "slice positions", lambda: _cuts(thr_img, roi_img))
        sec.figures.append(figures.slices_figure(thr_img, f"{title}: axial slices", cuts, "z"))
        peak = _safe(sec, "the peak position", lambda: figures.peak_mm(thr_img))
        sec.figures.append(figures.slices_figure(thr_img, f"{title}: at the peak", peak,
                                                 "ortho"))

    if an.map(BASERATE) is not None:
        def _base():
            img = _load(an.map(BASERATE))
            sec.figures.append(figures.slices_figure(
                img, f"{title}: base-rate map (probability of a focus per voxel)",
                _cuts(img, roi_img), "z", threshold=1e-12, cmap="viridis",
                caption="Sum of the kernels of all reference-database foci, normalised to 1."))
        _safe(sec, "the base-rate map", _base)

    clusters = None
    if "clusters" in an.tables:
        clusters = _safe(sec, "the cluster table", lambda: read_tsv(an.tables["clusters"]))
    contrib = None
    if "contributions" in an.tables:
        contrib = _safe(sec, "the contributions table",
                        lambda: read_tsv(an.tables["contributions"]))
    if clusters is not None:
        shown = clusters
        if contrib is not None and {"cluster_id", "jackknife"} <= set(contrib.columns):
            def _merge():
                from ..stats.contributions import summarize

                s = summarize(contrib)
                return clusters.assign(**{"contributing experiments (jackknife, foci)":
                                          clusters["cluster_id"].map(s).fillna("")})
            shown = _safe(sec, "the contributions summary", _merge)
            shown = clusters if shown is None else shown
        sec.tables.append(df_table(shown, f"{title}: clusters",
                                   note="" if len(clusters) else "No significant cluster."))
    if "peaks" in an.tables:
        peaks = _safe(sec, "the peak table", lambda: read_tsv(an.tables["peaks"]))
        if peaks is not None:
            sec.tables.append(df_table(peaks, f"{title}: peaks and sub-peaks (>= 8 mm apart)"))
    if contrib is not None:
        c = contrib
        if {"jackknife", "n_foci_in_cluster"} <= set(c.columns):
            c = c[(c["jackknife"] > 0) | (c["n_foci_in_cluster"] > 0)]
        sec.details.append(df_table(c, f"{title}: contributions of experiments per cluster",
                                    note="Jackknife = share of the cluster's ALE lost when the "
                                         "experiment is left out (mean over its voxels)."))
    if "null" in an.tables:
        def _null():
            null = read_tsv(an.tables["null"])
            sec.figures.append(figures.null_figure(
                null, f"{title}: null distributions ({len(null)} iterations)",
                caption="Red: 95th percentile (FWE threshold); green: observed value.",
                observed=_observed(an, clusters)))
        _safe(sec, "the null distributions", _null)
    return sec


def comparison_section(analyses: list[discover.Analysis], parent_id: str, roi_img) -> Section | None:
    by = {a.meta: a for a in analyses}
    if not ({"ale", "csale"} <= set(by)):
        return None
    sec = Section(anchor(parent_id, "compare"), "ALE vs C-SALE")
    if by["ale"].map(THRESHOLDED) is None or by["csale"].map(THRESHOLDED) is None:
        sec.notices.append("A thresholded map is missing; nothing to compare.")
        return sec

    def _cmp():
        a, c = _load(by["ale"].map(THRESHOLDED)), _load(by["csale"].map(THRESHOLDED))
        da = np.nan_to_num(np.asanyarray(a.dataobj)) != 0
        dc = np.nan_to_num(np.asanyarray(c.dataobj)) != 0
        both = int((da & dc).sum())
        dice = 2 * both / (da.sum() + dc.sum()) if (da.sum() + dc.sum()) else float("nan")
        sec.tables.append(kv_table("Significant voxels", [
            ("ALE", int(da.sum())), ("C-SALE", int(dc.sum())), ("both", both),
            ("ALE only", int((da & ~dc).sum())), ("C-SALE only", int((dc & ~da).sum())),
            ("Dice overlap", dice)]))
        union = nib_union(a, da | dc)
        cuts = figures.z_cuts_within(roi_img) if roi_img is not None else \
            figures.z_cuts_for(union)
        sec.figures.append(figures.comparison_figure(
            [("ALE", a), ("C-SALE", c)], "ALE (top) and C-SALE (bottom), same slices and scale",
            cuts))
    _safe(sec, "the comparison", _cmp)
    return sec


def nib_union(ref, mask):
    import nibabel as nib

    return nib.Nifti1Image(mask.astype(np.float32), ref.affine)


# ---- studyset sections ----------------------------------------------------------------------
def _run_info(summary: dict, name: str):
    an = summary.get("analyses") if isinstance(summary, dict) else None
    return an.get(name) if isinstance(an, dict) else None


def macm_section(m: discover.Macm, parent_id: str, summary: dict) -> Section:
    sec = Section(anchor(parent_id, "macm", m.name), f"MACM: seed {m.name}")
    if m.seed_mask is not None:
        def _seed():
            img = _load(m.seed_mask)
            n = int((np.asanyarray(img.dataobj) != 0).sum())
            sec.info.append(("Seed voxels", str(n)))
            sec.figures.append(figures.roi_figure(img, f"MACM seed {m.name}"))
        _safe(sec, "the MACM seed", _seed)
    else:
        sec.notices.append("No seed mask found for this MACM.")
    if m.experiments is not None:
        df = _safe(sec, "the selected experiments", lambda: read_tsv(m.experiments))
        if df is not None:
            sec.info.append(("Selected experiments", str(len(df))))
            sec.details.append(df_table(df, "Experiments selected by the seed"))
    info = _run_info(summary, "macm")
    for an in m.analyses:
        sec.children.append(analysis_section(an, sec.id, None, None))
    cmp = comparison_section(m.analyses, sec.id, None)
    if cmp is not None:
        sec.children.append(cmp)
    if isinstance(info, dict):
        sec.info += [(str(k), fmt(v)) for k, v in info.items()
                     if isinstance(v, (int, float, str, bool, np.number))]
    return sec


def _skipped(summary: dict) -> list[str]:
    out = []
    sk = summary.get("skipped")
    if isinstance(sk, dict):
        out += [f"{k}: {v}" for k, v in sk.items()]
    elif isinstance(sk, (list, tuple)):
        for v in sk:
            if isinstance(v, dict):
                out.append(f"{v.get('analysis', '')}: {v.get('reason', '')}")
            else:
                out.append(str(v))
    an = summary.get("analyses")
    if isinstance(an, dict):
        out += [f"{k}: {v['skipped']}" for k, v in an.items()
                if isinstance(v, dict) and v.get("skipped")]
    return out


def _ran(summary: dict) -> list[str]:
    an = summary.get("analyses")
    if isinstance(an, dict):
        return [k for k, v in an.items() if not (isinstance(v, dict) and v.get("skipped"))]
    return [str(a) for a in an] if isinstance(an, (list, tuple)) else []


def studyset_section(ss: discover.Studyset, summary: dict) -> tuple[Section, bool]:
    sec = Section(anchor("studyset", ss.label), f"Studyset {ss.label}")
    talairach = False
    for key, name in (("source", "Source"), ("n_experiments", "Experiments"),
                      ("n_foci", "Foci"), ("runtime_s", "Runtime")):
        if key in summary:
            sec.info.append((name, fmt_seconds(summary[key]) if key == "runtime_s"
                             else fmt(summary[key])))
    for s in _skipped(summary):
        sec.notices.append(f"Skipped {s}")
    if ss.experiments_table is not None:
        df = _safe(sec, "the experiments table", lambda: read_tsv(ss.experiments_table))
        if df is not None:
            if "space" in df.columns:
                n_tal = int(df["space"].astype(str).str.contains("TAL").sum())
                talairach = n_tal > 0
                if n_tal:
                    sec.info.append(("Converted from Talairach (tal2icbm)",
                                     f"{n_tal} experiments"))
            if "status" in df.columns:
                dropped = int((~df["status"].astype(str).str.startswith("kept")).sum())
                if dropped:
                    sec.notices.append(f"{dropped} experiments dropped (see the table).")
            sec.details.append(df_table(df, "Experiments"))
    roi_img = None
    for p in ss.roi_masks:
        def _roi(p=p):
            img = _load(p)
            roi = p.name.split("_roi-", 1)[1].split("_", 1)[0]
            sec.info.append(("ROI", roi))
            sec.figures.append(figures.roi_figure(img, f"Region of interest: {roi}"))
            return img
        img = _safe(sec, f"the ROI mask {p.name}", _roi)
        roi_img = roi_img if roi_img is not None else img
    for an in ss.analyses:
        sec.children.append(analysis_section(an, sec.id, roi_img, _run_info(summary, an.meta)))
    cmp = comparison_section(ss.analyses, sec.id, roi_img)
    if cmp is not None:
        sec.children.append(cmp)
    for m in ss.macms:
        sec.children.append(macm_section(m, sec.id, summary))
    if not ss.analyses and not ss.macms:
        sec.notices.append("No analysis outputs found for this studyset.")
    return sec, talairach


# ---- page -----------------------------------------------------------------------------------
def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("csale_app.report", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def _summary_tables(context: dict, found: list[str]) -> list[Table]:
    run = [("csale_app version", context.get("version", "")),
           ("Command line", context.get("command_line", context.get("command", ""))),
           ("Device", context.get("device", "")),
           ("Runtime", fmt_seconds(context.get("runtime_s", context.get("runtime_seconds"))))]
    for key in ("input_dir", "output_dir", "database", "started", "finished"):
        if key in context:
            run.append((key.replace("_", " ").capitalize(), context[key]))
    if isinstance(context.get("inputs"), dict):
        run += list(context["inputs"].items())
    elif context.get("inputs"):
        run.append(("Inputs", context["inputs"]))
    tables = [kv_table("Run", [(k, " ".join(map(str, v)) if k == "Command line"
                                and isinstance(v, (list, tuple)) else v) for k, v in run])]
    settings = context.get("settings") or {}
    if settings:
        tables.append(kv_table("Settings", sorted(settings.items())))
    rows = []
    summaries = context.get("studysets") or []
    labels = [str(s.get("label", "")) for s in summaries] + \
        [lab for lab in found if lab not in {str(s.get("label", "")) for s in summaries}]
    by = {str(s.get("label", "")): s for s in summaries}
    for lab in labels:
        s = by.get(lab, {})
        rows.append([lab, fmt(s.get("n_experiments")), fmt(s.get("n_foci")),
                     ", ".join(_ran(s)) or ("see below" if lab in found else "none"),
                     "; ".join(_skipped(s))])
    tables.append(Table("Studysets", ["Studyset", "Experiments", "Foci", "Analyses run",
                                      "Skipped (reason)"], rows))
    return tables


def render_report(output_dir: Path, context: dict | None = None) -> str:
    import datetime

    from .. import __version__

    context = dict(context or {})
    context.setdefault("version", __version__)
    studysets = discover.find_studysets(Path(output_dir))
    summaries = {str(s.get("label", "")): s for s in context.get("studysets") or []
                 if isinstance(s, dict)}
    sections, talairach, kinds = [], False, set()
    for ss in studysets:
        sec, tal = studyset_section(ss, summaries.get(ss.label, {}))
        sections.append(sec)
        talairach |= tal
        kinds |= {a.meta for a in ss.analyses}
        if ss.macms:
            kinds.add("macm")
    settings = context.get("settings") or {}
    kinds |= set(settings.get("analyses", ())) if isinstance(settings, dict) else set()
    from ..stats.labels import atlas_credits

    return _environment().get_template("report.html.j2").render(
        ctx=context,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        summary_tables=_summary_tables(context, [s.label for s in studysets]),
        warnings=[str(w) for w in context.get("warnings") or []],
        sections=sections,
        methods=methods.methods_paragraphs(str(context["version"]), settings, kinds,
                                           talairach, str(context.get("device", ""))),
        references=methods.reference_list(),
        atlases=atlas_credits(),
    )


def build_report(output_dir: Path, context: dict | None = None) -> Path:
    """Write OUTPUT_DIR/report.html (atomically) and OUTPUT_DIR/references.bib."""
    output_dir = Path(output_dir)
    # nilearn calls gc.collect() for every image it reads (dozens per figure); with a large
    # heap (NiMARE, pandas) that dominates the run time. Freezing the objects that exist now
    # keeps those collections short; objects made while building are still collected.
    gc.collect()
    gc.freeze()
    try:
        html = render_report(output_dir, context)
    finally:
        gc.unfreeze()
    write_text(output_dir / "references.bib", methods.bibtex())
    path = write_text(output_dir / "report.html", html)
    LOG.info("report written: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
