"""Report sections: one per studyset, with its analyses, comparison and MACMs.

Each part runs under :func:`guarded`, so a part that fails becomes a notice, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import names
from ..records import StudysetSummary
from . import discover, figures, flatmap
from .tables import (
    Table,
    anchor,
    clusters_report_table,
    contributions_table,
    df_table,
    fmt,
    fmt_seconds,
    kv_table,
    lobules_table,
    peaks_report_table,
    read_tsv,
    unique,
)
from .viewer import viewer

LOG = logging.getLogger(__name__)
TITLES = {"ale": "ALE", "csale": "C-SALE", "mkdachi2": "MKDA chi-square (Neurosynth)"}
MAX_PEAK_VIEWS = 6
OUTLINE = "cyan outline"


@dataclass
class Section:
    id: str
    title: str
    info: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # prominent (red) warnings
    figures: list = field(default_factory=list)
    viewers: list = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    details: list[Table] = field(default_factory=list)  # collapsed tables
    children: list["Section"] = field(default_factory=list)

    def finish(self) -> "Section":
        self.notices = unique(self.notices)
        self.alerts = unique(self.alerts)
        return self


def guarded(section: Section, what: str, fn):
    """Run one part of a section; a failure is logged and shown as a notice."""
    try:
        return fn()
    except Exception as exc:
        LOG.warning("report: %s failed: %s: %s", what, type(exc).__name__, exc)
        section.notices.append(f"{what} could not be shown ({type(exc).__name__}: {exc}).")
        return None


def load_image(path: Path | None):
    """The map in memory: a file-backed image would be read and decompressed again at
    every access of its data (each figure reads a map several times)."""
    import nibabel as nib

    if path is None:
        return None
    img = nib.load(str(path))
    return nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine)


def cuts_for(img, roi_img):
    return figures.z_cuts_within(roi_img) if roi_img is not None else figures.z_cuts_for(img)


def _observed(an: discover.Analysis, clusters: pd.DataFrame | None) -> dict:
    obs = {}
    p = an.map(names.ALE_STAT)
    if p is not None:
        v = float(np.nanmax(np.asanyarray(load_image(p).dataobj)))
        obs.update({"max_ale": v, "max": v, "max_stat": v})
    if clusters is not None and len(clusters) and "size_voxels" in clusters:
        v = float(clusters["size_voxels"].max())
        obs.update({"max_cluster_size": v, "max_size": v, "size": v})
    return obs


# ---- the reference database ------------------------------------------------------------------
def database_of(
    summary: StudysetSummary | None, an: discover.Analysis | None = None
) -> dict | None:
    """The run's reference database: this run's summary, else (results an earlier run left
    in OUTPUT_DIR) the C-SALE sidecar."""
    if summary is not None and summary.database is not None:
        return summary.database
    side = an.sidecar() if an is not None else {}
    ref = side.get("ReferenceDatabase") if isinstance(side, dict) else None
    if isinstance(ref, dict):
        # the sidecar holds Database.describe(): the same keys as the pipeline's summary
        return {
            "source": ref.get("source"),
            "files": [Path(str(f)).name for f in ref.get("files", [])],
            "n_experiments": ref.get("n_experiments"),
            "n_foci": ref.get("n_foci"),
        }
    return None


def database_table(db: dict) -> Table:
    rows = [("Which", db["source"])] if db.get("source") else []
    return kv_table(
        "Reference database (base rate)",
        rows
        + [
            ("Files", db.get("files") or "n/a"),
            ("Experiments", db.get("n_experiments")),
            ("Foci", db.get("n_foci")),
        ],
    )


def _database_parts(sec: Section, db: dict | None, label: str) -> None:
    if db is None:
        sec.notices.append("The reference database is not recorded for this run.")
        return
    sec.tables.insert(0, database_table(db))
    if db.get("same_as_studyset"):
        sec.alerts.append(
            f"The reference database is exactly the analysed studyset '{label}': the base "
            "rate is built from the same foci it is tested against, so C-SALE cannot find "
            "convergence beyond it. Give a larger database (--database or INPUT_DIR/database/)"
            " for a meaningful C-SALE."
        )


# ---- analysis sections ----------------------------------------------------------------------
_INFO = [
    ("Method", "Method"),
    ("NumberOfExperiments", "Experiments"),
    ("NumberOfFoci", "Foci"),
    ("NumberOfSubjects", "Subjects"),
    ("NullIterations", "Permutations"),
    ("ClusterFormingThreshold", "Cluster-forming threshold"),
    ("Connectivity", "Connectivity"),
    ("Device", "Device"),
]
_RUN_INFO = {
    "n_clusters": "Significant clusters",
    "n_extent_clusters": "Clusters above the extent threshold",
    "null_seconds": "Null runtime",
    "ss_thresh": "Cluster-forming ALE",
    "vfwe_threshold": "Voxel-FWE ALE threshold",
}


def _peaks(clusters: pd.DataFrame | None) -> list[tuple[int, tuple[float, float, float]]]:
    if clusters is None or not len(clusters) or "peak_x" not in clusters:
        return []
    return [
        (int(r.cluster_id), (float(r.peak_x), float(r.peak_y), float(r.peak_z)))
        for r in clusters.head(MAX_PEAK_VIEWS).itertuples()
    ]


def _flatmap(
    sec: Section,
    img,
    title: str,
    roi_img,
    vmax=None,
    cmap: str = "autumn",
    what: str = "",
    first: bool = True,
) -> None:
    """A SUIT flatmap of ``img`` if it has voxels in the cerebellum: the first figure of the
    section for a cerebellar ROI (unless not ``first``), else after the views already
    there."""

    def _add():
        if img is None or flatmap.cerebellar_voxels(img) == 0:
            return
        fig = flatmap.flatmap_figure(
            img, f"{title}: SUIT flatmap{what}", vmax=vmax, cmap=cmap, caption=flatmap.caption()
        )
        fig.attrs = {**fig.attrs, "flatmap": "suit"}
        if first and flatmap.is_cerebellar_roi(roi_img):
            sec.figures.insert(0, fig)
        else:
            sec.figures.append(fig)

    guarded(sec, "the SUIT flatmap", _add)


def _figures_ale(sec, an, title, thr_img, roi_img, clusters):
    sec.figures.append(
        figures.glass_brain_figure(thr_img, f"{title}: thresholded z map (glass brain)")
    )
    cuts = guarded(sec, "slice positions", lambda: cuts_for(thr_img, roi_img))
    sec.figures.append(figures.slices_figure(thr_img, f"{title}: axial slices", cuts, "z"))
    _flatmap(sec, thr_img, title, roi_img, what=" of the thresholded z map")
    table = an.tables.get("clusters")
    for cid, peak in _peaks(clusters):
        sec.figures.append(
            figures.peak_figure(
                thr_img,
                f"{title}: cluster {cid} at its peak ({fmt(peak)})",
                peak,
                attrs={
                    "peak": ",".join(fmt(v) for v in peak),
                    "table": table.name if table else "",
                },
            )
        )
    sec.viewers.append(
        viewer(
            thr_img,
            f"{title}: interactive view of the thresholded z map",
            cut_coords=_peaks(clusters)[0][1] if _peaks(clusters) else None,
        )
    )


def _figures_csale(sec, an, title, thr_img, roi_img, clusters, n_iters):
    """-log10 p (the information C-SALE carries) with the p-floor and clusters outlined."""
    logp_path = an.map(names.LOGP)
    if logp_path is None:
        sec.notices.append("No -log10 p map was written; showing the thresholded z map.")
        return _figures_ale(sec, an, title, thr_img, roi_img, clusters)
    logp = load_image(logp_path)
    sig = thr_img is not None and not figures.is_empty(thr_img)
    floor = f"1/{n_iters} = {1 / n_iters:.2g}" if n_iters else "1/n"
    top = float(np.log10(n_iters)) if n_iters else None
    note = (
        f"With {n_iters or 'n'} permutations the smallest p is {floor} "
        f"(-log10 p = {top:.2f}); voxels at that floor are as significant as the "
        "permutations can tell."
        if top
        else "The smallest p is 1/n (n permutations)."
    )
    sec.info.append(("p-floor", f"{floor} (-log10 p = {top:.2f})" if top else "1/n"))
    data = np.nan_to_num(np.asanyarray(logp.dataobj))
    if sig:
        inside = np.nan_to_num(np.asanyarray(thr_img.dataobj)) != 0
        import nibabel as nib

        sig_logp = nib.Nifti1Image(np.where(inside, data, 0).astype(np.float32), logp.affine)
        sec.figures.append(
            figures.glass_brain_figure(
                sig_logp,
                f"{title}: -log10 p in the significant clusters (glass brain)",
                caption=note,
            )
        )
        _flatmap(
            sec, sig_logp, title, roi_img, vmax=top, what=" of -log10 p in the significant clusters"
        )
    sec.figures.append(
        figures.logp_figure(
            logp,
            thr_img if sig else None,
            f"{title}: -log10 p (p < 0.05 shown)",
            cuts_for(logp, roi_img),
            "z",
            vmax=top,
            caption=(
                f"Voxel-wise -log10 p against the base-rate null; {OUTLINE}: clusters "
                "significant at the cluster level (FWE). "
                if sig
                else "Voxel-wise -log10 p against the base-rate null, uncorrected; no cluster is "
                "significant. "
            )
            + note,
        )
    )
    if not sig:
        return
    table = an.tables.get("clusters")
    for cid, peak in _peaks(clusters):
        sec.figures.append(
            figures.peak_figure(
                logp,
                f"{title}: cluster {cid} at its peak ({fmt(peak)})",
                peak,
                caption=f"-log10 p, p < 0.05 shown; {OUTLINE}: significant clusters.",
                clusters_img=thr_img,
                vmax=top,
                threshold=-np.log10(0.05),
                cmap="autumn",
                attrs={
                    "peak": ",".join(fmt(v) for v in peak),
                    "table": table.name if table else "",
                },
            )
        )
    sec.viewers.append(
        viewer(
            sig_logp,
            f"{title}: interactive view of -log10 p in the significant clusters",
            vmax=top,
            cmap="autumn",
            cut_coords=_peaks(clusters)[0][1] if _peaks(clusters) else None,
        )
    )


def _extent_rule(side: dict, roi: bool) -> str:
    ext = side.get("ExtentThreshold") if isinstance(side.get("ExtentThreshold"), dict) else {}
    p, k = ext.get("p", "the voxel threshold"), ext.get("min_voxels", "K")
    return (
        "restricted to the ROI first, then " if roi else ""
    ) + f"p < {fmt(p)}, faces connectivity, clusters of more than {fmt(k)} voxels"


def _figure_extent(sec, an, title, roi_img):
    """The cluster-extent map (the study's rule), beside the cluster-FWE figures."""
    img = load_image(an.map(names.EXTENT_THRESHOLDED))
    if figures.is_empty(img):
        sec.notices.append(
            "No cluster survived the cluster-extent rule (the cluster-extent map is empty)."
        )
        return
    rule = _extent_rule(an.sidecar(), roi_img is not None)
    sec.figures.append(
        figures.slices_figure(
            img,
            f"{title}: cluster-extent map (the study's rule)",
            cuts_for(img, roi_img),
            "z",
            caption=f"z of the voxels that survive the cluster-extent rule ({rule}); unlike the "
            "cluster-FWE map, its clusters are formed "
            + ("inside the ROI itself." if roi_img is not None else "in the mask."),
        )
    )


def _subsample_parts(sec, an, title, roi_img):
    """Share maps of both rules, the box plot and the table of subsample correlations."""
    where = "the ROI" if roi_img is not None else "the analysis mask"
    rules = {
        names.SUBSAMPLE_EXTENT_MAP: (
            "cluster-extent rule (the study's)",
            f"Share of subsamples in which the voxel survives the cluster-extent rule "
            f"({_extent_rule(an.sidecar(), roi_img is not None)}), as the study mapped "
            "it.",
        ),
        names.SUBSAMPLE_FWE_MAP: (
            "cluster-level FWE rule",
            "Share of subsamples in which the voxel lies in a cluster significant at the "
            f"cluster level (FWE; clusters formed in the analysis mask, shown in {where}).",
        ),
    }
    for name, (rule, caption) in rules.items():
        if an.map(name) is None:
            continue
        img = load_image(an.map(name))
        side = an.map_sidecar(name)
        n = side.get("Subsamples")
        size = side.get("ExperimentsPerSubsample")
        sec.figures.append(
            figures.slices_figure(
                img,
                f"{title}: share of subsamples surviving the {rule}",
                cuts_for(img, roi_img),
                "z",
                cmap="viridis",
                vmax=1.0,
                caption=caption + (f" {n} subsamples of {size} experiments." if n else ""),
            )
        )
        _flatmap(
            sec,
            img,
            title,
            roi_img,
            vmax=1.0,
            cmap="viridis",
            what=f" of the share of subsamples surviving the {rule}",
            first=False,
        )
    if "subsamples" not in an.tables:
        return
    table = read_tsv(an.tables["subsamples"])
    sec.figures.append(
        figures.box_figure(
            table["pearson_r"].to_numpy(dtype=float),
            f"{title}: correlation of each subsample's z map with the full sample's "
            f"({len(table)} subsamples)",
            "Pearson r",
            caption=f"Unthresholded z maps, voxels of {where}; one dot per subsample.",
        )
    )
    shown = table.drop(columns=[c for c in ("experiment_ids",) if c in table])
    sec.details.append(
        df_table(
            shown,
            f"{title}: subsamples (correlation with the full sample, voxels surviving each rule)",
            note="Experiments of each subsample: the TSV's experiment_ids column.",
            css="narrow",
        )
    )


def analysis_section(
    an: discover.Analysis,
    parent_id: str,
    roi_img,
    run_info,
    summary: StudysetSummary | None = None,
    label: str = "",
    macm: bool = False,
) -> Section:
    if an.meta == "mkdachi2":
        from .mkdachi2 import mkdachi2_section

        return mkdachi2_section(an, parent_id, roi_img, macm=macm)
    title = TITLES.get(an.meta, an.meta)
    sec = Section(anchor(parent_id, an.meta), title)
    side = an.sidecar()
    for key, name in _INFO:
        if key in side:
            sec.info.append((name, fmt(side[key])))
    if isinstance(run_info, dict):
        sec.info += [
            (_RUN_INFO[k], fmt_seconds(v) if k == "null_seconds" else fmt(v))
            for k, v in run_info.items()
            if k in _RUN_INFO
        ]
    n_iters = side.get("NullIterations")
    if an.meta == "csale":
        _database_parts(sec, database_of(summary, an), label)

    clusters = None
    if "clusters" in an.tables:
        clusters = guarded(sec, "the cluster table", lambda: read_tsv(an.tables["clusters"]))
    contrib = None
    if "contributions" in an.tables:
        contrib = guarded(
            sec, "the contributions table", lambda: read_tsv(an.tables["contributions"])
        )

    thr_img = guarded(sec, "the thresholded map", lambda: load_image(an.map(names.THRESHOLDED)))
    if an.map(names.THRESHOLDED) is None:
        sec.notices.append("No thresholded map was written for this analysis.")
    elif thr_img is not None and figures.is_empty(thr_img):
        sec.notices.append("No cluster survived the threshold (thresholded map is empty).")
    if an.meta == "csale":
        guarded(
            sec,
            "the C-SALE maps",
            lambda: _figures_csale(
                sec,
                an,
                title,
                thr_img,
                roi_img,
                clusters,
                int(n_iters) if isinstance(n_iters, (int, float)) else None,
            ),
        )
    elif thr_img is not None and not figures.is_empty(thr_img):
        guarded(
            sec, "the ALE maps", lambda: _figures_ale(sec, an, title, thr_img, roi_img, clusters)
        )
    elif an.map(names.Z) is not None:
        sec.figures.append(
            figures.glass_brain_figure(
                load_image(an.map(names.Z)),
                f"{title}: uncorrected z > 3.09 (orientation only)",
                threshold=3.09,
                caption="Not corrected for multiple comparisons.",
            )
        )

    if an.meta == "csale" and an.map(names.EXTENT_THRESHOLDED) is not None:
        guarded(sec, "the cluster-extent map", lambda: _figure_extent(sec, an, title, roi_img))
    if an.meta == "csale" and (
        set(names.SUBSAMPLE_MAPS) & set(an.maps) or "subsamples" in an.tables
    ):
        guarded(sec, "the subsamples", lambda: _subsample_parts(sec, an, title, roi_img))

    if an.map(names.BASERATE) is not None:

        def _base():
            img = load_image(an.map(names.BASERATE))
            sec.figures.append(
                figures.slices_figure(
                    img,
                    f"{title}: base-rate map (probability of a focus per voxel)",
                    cuts_for(img, roi_img),
                    "z",
                    threshold=1e-12,
                    cmap="viridis",
                    caption="Sum of the kernels of all reference-database foci, normalised to 1.",
                )
            )

        guarded(sec, "the base-rate map", _base)

    if clusters is not None:
        sec.tables.append(
            clusters_report_table(
                clusters,
                contrib,
                f"{title}: clusters" + (" (cluster-level FWE)" if an.meta == "csale" else ""),
            )
        )
    if "extent_clusters" in an.tables:
        extent = guarded(
            sec, "the cluster-extent table", lambda: read_tsv(an.tables["extent_clusters"])
        )
        if extent is not None:
            sec.tables.append(
                clusters_report_table(
                    extent,
                    None,
                    f"{title}: clusters of the cluster-extent map (the study's rule)",
                    fwe=False,
                )
            )
    if "lobules" in an.tables:
        lob = guarded(sec, "the SUIT lobule table", lambda: read_tsv(an.tables["lobules"]))
        if lob is not None:
            sec.tables.append(lobules_table(lob, f"{title}: significant voxels per SUIT lobule"))
    if "peaks" in an.tables:
        peaks = guarded(sec, "the peak table", lambda: read_tsv(an.tables["peaks"]))
        if peaks is not None and len(peaks):
            sec.tables.append(
                peaks_report_table(peaks, f"{title}: peaks and sub-peaks (>= 8 mm apart)")
            )
    if contrib is not None and len(contrib):
        sec.details.append(
            contributions_table(contrib, f"{title}: contributions of experiments per cluster")
        )
    if "null" in an.tables:

        def _null():
            null = read_tsv(an.tables["null"])
            sec.figures.append(
                figures.null_figure(
                    null,
                    f"{title}: null distributions ({len(null)} iterations)",
                    caption="Red: 95th percentile (FWE threshold); green: observed value.",
                    observed=_observed(an, clusters),
                )
            )

        guarded(sec, "the null distributions", _null)
    return sec.finish()


def comparison_section(
    analyses: list[discover.Analysis], parent_id: str, roi_img
) -> Section | None:
    by = {a.meta: a for a in analyses}
    if not ({"ale", "csale"} <= set(by)):
        return None
    sec = Section(anchor(parent_id, "compare"), "ALE vs C-SALE")
    if by["ale"].map(names.THRESHOLDED) is None or by["csale"].map(names.THRESHOLDED) is None:
        sec.notices.append("A thresholded map is missing; nothing to compare.")
        return sec

    def _cmp():
        import nibabel as nib

        a = load_image(by["ale"].map(names.THRESHOLDED))
        c = load_image(by["csale"].map(names.THRESHOLDED))
        da = np.nan_to_num(np.asanyarray(a.dataobj)) != 0
        dc = np.nan_to_num(np.asanyarray(c.dataobj)) != 0
        both = int((da & dc).sum())
        dice = 2 * both / (da.sum() + dc.sum()) if (da.sum() + dc.sum()) else float("nan")
        sec.tables.append(
            kv_table(
                "Significant voxels",
                [
                    ("ALE", int(da.sum())),
                    ("C-SALE", int(dc.sum())),
                    ("both", both),
                    ("ALE only", int((da & ~dc).sum())),
                    ("C-SALE only", int((dc & ~da).sum())),
                    ("Dice overlap", dice),
                ],
            )
        )
        union = nib.Nifti1Image((da | dc).astype(np.float32), a.affine)
        cuts = figures.z_cuts_within(roi_img) if roi_img is not None else figures.z_cuts_for(union)
        # C-SALE's thresholded z sits at the floor z of p = 1/n: shown as a mask here
        sec.figures.append(
            figures.comparison_figure(
                [
                    ("ALE (z)", a),
                    (
                        "C-SALE (significant voxels)",
                        nib.Nifti1Image(dc.astype(np.float32), c.affine),
                    ),
                ],
                "ALE (top) and C-SALE (bottom), same slices",
                cuts,
            )
        )

    guarded(sec, "the comparison", _cmp)
    return sec.finish()
