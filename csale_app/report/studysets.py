"""Studyset and MACM sections (inputs, ROI, experiments, then the analysis sections)."""

from __future__ import annotations

import numpy as np

from . import discover, figures
from .sections import (
    Section,
    load_image,
    guarded,
    analysis_section,
    comparison_section,
    database_of,
    database_table,
)
from ..records import StudysetSummary
from .tables import anchor, experiments_tables, fmt, fmt_seconds, read_tsv


def run_info(summary: StudysetSummary | None, name: str) -> dict | None:
    """The summary the stage of analysis ``name`` recorded (None: not in this run)."""
    return None if summary is None else summary.analyses.get(name)


def roi_text(roi: dict) -> str:
    text = f"{roi.get('label', 'ROI')}: {fmt(roi.get('n_voxels'))} voxels"
    if roi.get("n_dropped_outside_brain"):
        text += f" ({fmt(roi['n_dropped_outside_brain'])} outside the brain mask dropped)"
    if roi.get("dilation_mm") is not None:
        text += (
            f"; analysis mask = ROI dilated by {fmt(roi['dilation_mm'])} mm within the "
            f"brain mask ({fmt(roi.get('n_analysis_voxels'))} voxels)"
        )
    return text


def macm_section(m: discover.Macm, parent_id: str, summary: StudysetSummary | None) -> Section:
    sec = Section(anchor(parent_id, "macm", m.name), f"MACM: seed {m.name}")
    info = run_info(summary, "macm")
    if isinstance(info, dict) and info.get("seed"):
        sec.info.append(("Seed", str(info["seed"])))
    sec.info.append(("Extent", "whole brain mask (the ROI does not restrict the MACM)"))
    if m.seed_mask is not None:

        def _seed():
            img = load_image(m.seed_mask)
            n = int((np.asanyarray(img.dataobj) != 0).sum())
            sec.info.append(("Seed voxels", str(n)))
            sec.figures.append(figures.roi_figure(img, f"MACM seed {m.name}"))

        guarded(sec, "the MACM seed", _seed)
    else:
        sec.notices.append("No seed mask found for this MACM.")
    db = database_of(summary, next((a for a in m.analyses if a.meta == "csale"), None))
    if db is not None:
        sec.tables.append(database_table(db))
    if m.experiments is not None:
        df = guarded(sec, "the selected experiments", lambda: read_tsv(m.experiments))
        if df is not None:
            rule = _selection_rule(m.experiments)
            sec.info.append(("Selected experiments", f"{len(df)} ({rule})"))
            from .tables import df_table

            sec.details.append(df_table(df, "Experiments selected by the seed"))
    for an in m.analyses:
        sec.children.append(analysis_section(an, sec.id, None, None, macm=True))
    cmp = comparison_section(m.analyses, sec.id, None)
    if cmp is not None:
        sec.children.append(cmp)
    return sec.finish()


def _selection_rule(experiments_tsv) -> str:
    """The MACM's selection rule from the experiments table's sidecar."""
    import json

    try:
        side = json.loads(experiments_tsv.with_suffix(".json").read_text(encoding="utf-8"))
        return str(side["SelectionRule"])
    except (OSError, ValueError, KeyError, TypeError):
        return "with a focus in the seed"


def _experiments(sec: Section, ss: discover.Studyset, summary: StudysetSummary | None) -> bool:
    """Experiments tables (analysed / not) and the counts beside them; True if Talairach."""
    talairach = False
    df = guarded(sec, "the experiments table", lambda: read_tsv(ss.experiments_table))
    if df is None:
        return False
    if "space" in df.columns:
        n_tal = int(df["space"].astype(str).str.contains("TAL").sum())
        talairach = n_tal > 0
        if n_tal:
            sec.info.append(("Converted from Talairach (tal2icbm)", f"{n_tal} experiments"))
    tables, counts = experiments_tables(df)
    n = counts["analysed"] if summary is None else summary.n_experiments
    text = fmt(n)
    if counts["not_analysed"] or counts["contrasts"] != counts["total"]:
        text += f" (of {counts['total']} in the studyset"
        if counts["contrasts"] != counts["total"]:
            text += f", merged from {counts['contrasts']} contrasts"
        if counts["not_analysed"]:
            text += f"; {counts['not_analysed']} not analysed, see the table"
        text += ")"
    sec.info.insert(1 if sec.info else 0, ("Experiments analysed", text))
    if isinstance(n, (int, float)) and int(n) != counts["analysed"]:
        sec.notices.append(
            f"The run recorded {fmt(n)} experiments but the experiments table "
            f"lists {counts['analysed']} as analysed."
        )
    sec.details += tables
    return talairach


def studyset_section(
    ss: discover.Studyset, summary: StudysetSummary | None, reused: bool = False
) -> tuple[Section, bool]:
    """``summary``: what this run recorded for the studyset (None: results of an earlier run
    that this run left in place; the section then shows what the files hold)."""
    sec = Section(anchor("studyset", ss.label), f"Studyset {ss.label}")
    if summary is not None and summary.source is not None:
        sec.info.append(("Source", fmt(summary.source)))
    term = summary.term if summary is not None else None
    if term:  # a --term studyset: what selected its studies
        sec.info.append(
            (
                "Term",
                f"'{term.get('term')}': {fmt(term.get('n_studies'))} "
                f"studies with weight >= {fmt(term.get('threshold'))} in "
                f"{term.get('feature_set')} (table desc-termstudies)",
            )
        )
    talairach = False
    if ss.experiments_table is not None:
        talairach = _experiments(sec, ss, summary)
    elif summary is not None:
        sec.info.append(("Experiments analysed", fmt(summary.n_experiments)))
    if summary is not None:
        sec.info.append(("Foci in the analysed experiments", fmt(summary.n_foci)))
    if summary is not None and summary.runtime_s is not None:
        sec.info.append(("Runtime", fmt_seconds(summary.runtime_s)))
    if reused:
        sec.notices.append(
            "Results reused from an earlier run with the same input files, "
            "version and settings (digest match)."
        )
    for s in [] if summary is None else summary.skip_reasons():
        sec.notices.append(f"Skipped {s}")
    roi_img = None
    roi = summary.roi if summary is not None else None
    if roi:
        sec.info.append(("ROI", roi_text(roi)))
    for p in ss.roi_masks:

        def _roi(p=p):
            img = load_image(p)
            name = p.name.split("_roi-", 1)[1].split("_", 1)[0]
            if not roi:
                sec.info.append(("ROI", name))
            sec.figures.append(figures.roi_figure(img, f"Region of interest: {name}"))
            return img

        img = guarded(sec, f"the ROI mask {p.name}", _roi)
        roi_img = roi_img if roi_img is not None else img
    if ss.input_foci is not None:

        def _foci():
            foci = read_tsv(ss.input_foci)
            n_exp = foci["experiment_id"].nunique() if "experiment_id" in foci else "n/a"
            cap = (
                f"{len(foci)} foci of {n_exp} experiments, one colour per experiment "
                "(colours repeat after 20)"
            )
            if roi_img is not None:
                cap += "; grey: outside the ROI (blue outline)"
            # only the drawn columns: the figure's key (figure_cache) then ignores the
            # source file and line, so identical foci from another file reuse the picture
            drawn = foci[[c for c in figures.FOCI_COLUMNS if c in foci.columns]]
            sec.figures.append(
                figures.foci_figure(drawn, f"Input foci of {ss.label}", roi_img, caption=cap + ".")
            )

        guarded(sec, "the input foci", _foci)
    for an in ss.analyses:
        sec.children.append(
            analysis_section(
                an, sec.id, roi_img, run_info(summary, an.meta), summary=summary, label=ss.label
            )
        )
    cmp = comparison_section(ss.analyses, sec.id, roi_img)
    if cmp is not None:
        sec.children.append(cmp)
    for m in ss.macms:
        sec.children.append(macm_section(m, sec.id, summary))
    if not ss.analyses and not ss.macms:
        sec.notices.append("No analysis outputs found for this studyset.")
    return sec.finish(), talairach
