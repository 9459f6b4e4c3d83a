"""Methods boilerplate (with the run's actual parameters), references and BibTeX.

Plain text only (no web addresses): DOIs are given as ``doi:...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import StudysetSummary


@dataclass(frozen=True)
class Ref:
    key: str
    cite: str  # in-text, e.g. "Eickhoff et al., 2009"
    authors: str  # BibTeX "and"-separated
    title: str
    journal: str
    year: int
    volume: str
    number: str
    pages: str
    doi: str

    def text(self) -> str:
        names = [a.strip() for a in self.authors.split(" and ")]
        shown = ", ".join(names[:6]) + (", et al." if len(names) > 6 else "")
        vol = self.volume + (f"({self.number})" if self.number else "")
        return (
            f"{shown} ({self.year}). {self.title}. {self.journal}, {vol}, "
            f"{self.pages.replace('--', '-')}. doi:{self.doi}"
        )

    def bibtex(self) -> str:
        fields = [
            ("author", self.authors),
            ("title", "{" + self.title + "}"),
            ("journal", self.journal),
            ("year", str(self.year)),
            ("volume", self.volume),
            ("number", self.number),
            ("pages", self.pages),
            ("doi", self.doi),
        ]
        body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields if v)
        return f"@article{{{self.key},\n{body}\n}}\n"


REFERENCES = {
    r.key: r
    for r in [
        Ref(
            "turkeltaub2002",
            "Turkeltaub et al., 2002",
            "Turkeltaub, Peter E. and Eden, Guinevere F. and Jones, Karen M. and "
            "Zeffiro, Thomas A.",
            "Meta-analysis of the functional neuroanatomy of single-word reading: method and "
            "validation",
            "NeuroImage",
            2002,
            "16",
            "3",
            "765--780",
            "10.1006/nimg.2002.1131",
        ),
        Ref(
            "turkeltaub2012",
            "Turkeltaub et al., 2012",
            "Turkeltaub, Peter E. and Eickhoff, Simon B. and Laird, Angela R. and Fox, Mick and "
            "Wiener, Martin and Fox, Peter",
            "Minimizing within-experiment and within-group effects in activation likelihood "
            "estimation meta-analyses",
            "Human Brain Mapping",
            2012,
            "33",
            "1",
            "1--13",
            "10.1002/hbm.21186",
        ),
        Ref(
            "eickhoff2009",
            "Eickhoff et al., 2009",
            "Eickhoff, Simon B. and Laird, Angela R. and Grefkes, Christian and Wang, Ling E. and "
            "Zilles, Karl and Fox, Peter T.",
            "Coordinate-based activation likelihood estimation meta-analysis of neuroimaging data: "
            "a random-effects approach based on empirical estimates of spatial uncertainty",
            "Human Brain Mapping",
            2009,
            "30",
            "9",
            "2907--2926",
            "10.1002/hbm.20718",
        ),
        Ref(
            "eickhoff2012",
            "Eickhoff et al., 2012",
            "Eickhoff, Simon B. and Bzdok, Danilo and Laird, Angela R. and Kurth, Florian and "
            "Fox, Peter T.",
            "Activation likelihood estimation meta-analysis revisited",
            "NeuroImage",
            2012,
            "59",
            "3",
            "2349--2361",
            "10.1016/j.neuroimage.2011.09.017",
        ),
        Ref(
            "eickhoff2016",
            "Eickhoff et al., 2016",
            "Eickhoff, Simon B. and Nichols, Thomas E. and Laird, Angela R. and Hoffstaedter, "
            "Felix and Amunts, Katrin and Fox, Peter T. and Bzdok, Danilo and Eickhoff, Claudia R.",
            "Behavior, sensitivity, and power of activation likelihood estimation characterized "
            "by massive empirical simulation",
            "NeuroImage",
            2016,
            "137",
            "",
            "70--85",
            "10.1016/j.neuroimage.2016.04.072",
        ),
        Ref(
            "langner2014",
            "Langner et al., 2014",
            "Langner, Robert and Rottschy, Claudia and Laird, Angela R. and Fox, Peter T. and "
            "Eickhoff, Simon B.",
            "Meta-analytic connectivity modeling revisited: controlling for activation base rates",
            "NeuroImage",
            2014,
            "99",
            "",
            "559--570",
            "10.1016/j.neuroimage.2014.06.007",
        ),
        Ref(
            "magielse2025",
            "Magielse et al., 2025",
            "Magielse, Neville and Manoli, Aikaterina and Eickhoff, Simon B. and Fox, Peter T. "
            "and Saberi, Amin and Valk, Sofie L.",
            "A bias-accounting meta-analytic approach refines and expands the cerebellar "
            "behavioral topography",
            "Neuroscience and Biobehavioral Reviews",
            2025,
            "179",
            "",
            "106418",
            "10.1016/j.neubiorev.2025.106418",
        ),
        Ref(
            "laird2009",
            "Laird et al., 2009",
            "Laird, Angela R. and Eickhoff, Simon B. and Li, Karl and Robin, Donald A. and "
            "Glahn, David C. and Fox, Peter T.",
            "Investigating the functional heterogeneity of the default mode network using "
            "coordinate-based meta-analytic modeling",
            "Journal of Neuroscience",
            2009,
            "29",
            "46",
            "14496--14505",
            "10.1523/JNEUROSCI.4004-09.2009",
        ),
        Ref(
            "robinson2010",
            "Robinson et al., 2010",
            "Robinson, Jennifer L. and Laird, Angela R. and Glahn, David C. and "
            "Lovallo, William R. and Fox, Peter T.",
            "Metaanalytic connectivity modeling: delineating the functional connectivity of the "
            "human amygdala",
            "Human Brain Mapping",
            2010,
            "31",
            "2",
            "173--184",
            "10.1002/hbm.20854",
        ),
        Ref(
            "lancaster2007",
            "Lancaster et al., 2007",
            "Lancaster, Jack L. and Tordesillas-Guti{\\'e}rrez, Diana and Martinez, Michael and "
            "Salinas, Felipe and Evans, Alan and Zilles, Karl and Mazziotta, John C. and Fox, "
            "Peter T.",
            "Bias between MNI and Talairach coordinates analyzed using the ICBM-152 brain template",
            "Human Brain Mapping",
            2007,
            "28",
            "11",
            "1194--1205",
            "10.1002/hbm.20345",
        ),
        Ref(
            "salo2023",
            "Salo et al., 2023",
            "Salo, Taylor and Yarkoni, Tal and Nichols, Thomas E. and Poline, Jean-Baptiste and "
            "Bilgel, Murat and Bottenhorn, Katherine L. and Jarecka, Dorota and Kent, James D. and "
            "Kimbler, Adam and Nielson, Dylan M. and Oudyk, Kendra M. and Peraza, Julio A. and "
            "P{\\'e}rez, Alexandre and Reeders, Puck C. and Yanes, Julio A. and Laird, Angela R.",
            "NiMARE: Neuroimaging Meta-Analysis Research Environment",
            "Aperture Neuro",
            2023,
            "3",
            "",
            "1--32",
            "10.52294/001c.87681",
        ),
        Ref(
            "diedrichsen2009",
            "Diedrichsen et al., 2009",
            'Diedrichsen, J{\\"o}rn and Balsters, Joshua H. and Flavell, Jonathan and Cussans, '
            "Emma and Ramnani, Narender",
            "A probabilistic MR atlas of the human cerebellum",
            "NeuroImage",
            2009,
            "46",
            "1",
            "39--46",
            "10.1016/j.neuroimage.2009.01.045",
        ),
        Ref(
            "diedrichsen2015",
            "Diedrichsen and Zotow, 2015",
            'Diedrichsen, J{\\"o}rn and Zotow, Ewa',
            "Surface-based display of volume-averaged cerebellar imaging data",
            "PLoS ONE",
            2015,
            "10",
            "7",
            "e0133402",
            "10.1371/journal.pone.0133402",
        ),
        Ref(
            "rolls2020",
            "Rolls et al., 2020",
            "Rolls, Edmund T. and Huang, Chu-Chung and Lin, Ching-Po and Feng, Jianfeng and "
            "Joliot, Marc",
            "Automated anatomical labelling atlas 3",
            "NeuroImage",
            2020,
            "206",
            "",
            "116189",
            "10.1016/j.neuroimage.2019.116189",
        ),
        Ref(
            "desikan2006",
            "Desikan et al., 2006",
            "Desikan, Rahul S. and S{\\'e}gonne, Florent and Fischl, Bruce and Quinn, Brian T. and "
            "Dickerson, Bradford C. and Blacker, Deborah and Buckner, Randy L. and Dale, Anders M. "
            "and Maguire, R. Paul and Hyman, Bradley T. and Albert, Marilyn S. and Killiany, "
            "Ronald J.",
            "An automated labeling system for subdividing the human cerebral cortex "
            "on MRI scans into gyral based regions of interest",
            "NeuroImage",
            2006,
            "31",
            "3",
            "968--980",
            "10.1016/j.neuroimage.2006.01.021",
        ),
        Ref(
            "yarkoni2011",
            "Yarkoni et al., 2011",
            "Yarkoni, Tal and Poldrack, Russell A. and Nichols, Thomas E. and Van Essen, David C. "
            "and Wager, Tor D.",
            "Large-scale automated synthesis of human functional neuroimaging data",
            "Nature Methods",
            2011,
            "8",
            "8",
            "665--670",
            "10.1038/nmeth.1635",
        ),
        Ref(
            "wager2007",
            "Wager et al., 2007",
            "Wager, Tor D. and Lindquist, Martin and Kaplan, Lauren",
            "Meta-analysis of functional neuroimaging data: current and future directions",
            "Social Cognitive and Affective Neuroscience",
            2007,
            "2",
            "2",
            "150--158",
            "10.1093/scan/nsm015",
        ),
        Ref(
            "benjamini1995",
            "Benjamini and Hochberg, 1995",
            "Benjamini, Yoav and Hochberg, Yosef",
            "Controlling the false discovery rate: a practical and powerful approach to multiple "
            "testing",
            "Journal of the Royal Statistical Society: Series B (Methodological)",
            1995,
            "57",
            "1",
            "289--300",
            "10.1111/j.2517-6161.1995.tb02031.x",
        ),
    ]
}


def _plain(text: str) -> str:
    """LaTeX accents in author names -> Unicode for the HTML reference list."""
    for a, b in (("{\\'e}", "é"), ('{\\"o}', "ö")):
        text = text.replace(a, b)
    return text


def reference_list() -> list[dict]:
    return [
        {"key": r.key, "text": _plain(r.text())}
        for r in sorted(REFERENCES.values(), key=lambda r: (r.cite.split()[0], r.year))
    ]


def bibtex() -> str:
    return "\n".join(r.bibtex() for r in REFERENCES.values())


def _c(*keys: str) -> str:
    return "(" + "; ".join(REFERENCES[k].cite for k in keys) + ")"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass
class Facts:
    """What ran, as the report found it (outputs) and the pipeline recorded it (summaries)."""

    version: str
    settings: dict
    analyses: set  # "ale", "csale", "mkdachi2" (studyset level), "macm" (a MACM folder)
    talairach: bool = False
    device: str = ""
    studysets: list[StudysetSummary] = field(default_factory=list)  # this run's


def _n(v) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) and v == v else "an unrecorded number of"


def _list(items: list[str]) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


DATABASE_RULE = (
    "The reference database is --database if given, else INPUT_DIR/database/, "
    "else every studyset in INPUT_DIR, whatever --studyset-label selects, so it is "
    "the same for every studyset of a run."
)
REUSE_RULE = (
    "Finished results are reused only when a digest of the bytes of every input "
    "file (studyset, database, ROI), the csale_app version and every "
    "result-changing setting matches; otherwise the run recomputes (or refuses "
    "without --overwrite)."
)


def _database(f: Facts) -> str:
    db = next((s.database for s in f.studysets if s.database is not None), None)
    if db is None:
        return DATABASE_RULE
    files = db.get("files") or []
    text = (
        DATABASE_RULE + f" In this run it was {db.get('source', 'chosen by the rule above')}"
        f" and held {_n(db.get('n_experiments'))} experiments with {_n(db.get('n_foci'))} "
        f"foci from {_list(files) if files else 'the listed files'}."
    )
    same = [
        s.label
        for s in f.studysets
        if s.database is not None and s.database.get("same_as_studyset")
    ]
    if same:
        text += (
            f" For {_list(same)} the database is exactly the analysed studyset, so "
            "C-SALE tests the studyset against its own base rate."
        )
    return text


def _roi_rule(f: Facts) -> str:
    s = f.settings
    roi = next((x.roi for x in f.studysets if x.roi is not None), None)
    d = _fmt((roi or {}).get("dilation_mm", s.get("roi_dilation_mm", 6.0)))
    name = (roi or {}).get("label") or s.get("roi") or "the region of interest"
    text = (
        f"With an ROI ({name}"
        + (f", {_n(roi.get('n_voxels'))} voxels" if roi and roi.get("n_voxels") else "")
        + f"), the permutation nulls run in the ROI dilated by {d} mm within the brain "
        "mask"
        + (
            f" ({_n(roi.get('n_analysis_voxels'))} voxels)"
            if roi and roi.get("n_analysis_voxels")
            else ""
        )
        + ", and thresholded maps, cluster tables, peaks and contributions are restricted "
        "to the ROI itself; unthresholded statistic maps keep the analysis mask."
    )
    if roi and roi.get("n_dropped_outside_brain"):
        text += (
            f" {_n(roi['n_dropped_outside_brain'])} ROI voxels outside the brain mask were dropped."
        )
    return text


def _ale_inference(f: Facts) -> str:
    s = f.settings
    alpha = s.get("cluster_alpha", 0.05)
    return (
        "uncorrected p-values came from the analytical null distribution "
        + _c("eickhoff2012")
        + "; family-wise error was controlled at the cluster level "
        f"with a Monte Carlo null of {_n(s.get('n_iters', 10000))} iterations in which "
        "every experiment's foci were redistributed uniformly in the mask: clusters (faces "
        f"connectivity) were formed at an uncorrected p < {_fmt(s.get('voxel_thresh', 0.001))}"
        f" and kept when their size exceeded the {100 * (1 - float(alpha)):g}th percentile "
        f"of the null distribution of maximum cluster sizes (cluster-level FWE p < "
        f"{_fmt(alpha)}) " + _c("eickhoff2016")
    )


def _csale_inference(f: Facts, mask: str = "the analysis mask", roi: bool = False) -> str:
    s = f.settings
    n = s.get("n_iters", 10000)
    null = s.get("csale_null", "probabilistic")
    k = s.get("min_cluster_size")
    thr = _fmt(s.get("voxel_thresh", 0.001))
    where = "the ROI" if roi else mask
    extent = (
        "the cluster-extent map (desc-extentthresholded) follows the study's order "
        + _c("magielse2025")
        + (
            ": the p map is first restricted to the ROI itself (not its dilation), then"
            if roi
            else ": within " + mask + ","
        )
        + f" voxels with p < {thr} are grouped into faces-connected clusters and "
        + (f"clusters of more than {k} voxels are kept" if k else "every cluster is kept")
    )
    fwe = (
        "cluster-level FWE (desc-thresholded) forms clusters of voxels with "
        f"p < {thr} in {mask}"
        + (" (the dilated ROI)" if roi else "")
        + " and keeps those whose size has an FWE p < "
        f"{_fmt(s.get('cluster_alpha', 0.05))} against the permutations' maximum "
        f"cluster sizes, reported within {where}"
    )
    diff = (
        " So a cluster that crosses the ROI boundary counts with its whole size for "
        "cluster-level FWE but only with its part inside the ROI for the extent map."
        if roi
        else ""
    )
    return (
        "the null distribution kept each experiment's number of foci and drew their "
        + (
            "positions from a base-rate map (the sum of the kernels of all foci in the "
            f"reference database, restricted to {mask} and normalised to sum 1)"
            if null == "probabilistic"
            else "positions from the foci of the reference database"
        )
        + f" ({_n(n)} iterations); the voxel-wise p is the share of "
        f"permutations with an ALE at least as high, so the smallest p is 1/{_n(n)}. "
        f"Two thresholded maps are written: {extent}; {fwe}.{diff}"
    )


def _subsampling(f: Facts, n: int) -> str:
    size = f.settings.get("subsample_size", 0.8)
    each = (
        f"{size} experiments"
        if isinstance(size, int) and not isinstance(size, bool)
        else f"{100 * float(size):g}% of the experiments (rounded)"
    )
    where = "the ROI" if _has_roi(f) else "the analysis mask"
    return (
        f"Stability was assessed as in the study: C-SALE was repeated on {n} subsamples "
        f"of {each}, drawn without replacement, each with its own null; per voxel, the "
        "share of subsamples in which it survives the cluster-extent rule "
        "(desc-subsamplesextent, the study's measure) and the cluster-level FWE rule "
        "(desc-subsamplesclusterfwe) was mapped, and each subsample's unthresholded z map "
        f"was correlated (Pearson) with the full sample's within {where}."
    )


def _has_roi(f: Facts) -> bool:
    return bool(f.settings.get("roi") or f.settings.get("roi_coords")) or any(
        x.roi is not None for x in f.studysets
    )


def _mkdachi2(f: Facts, studyset: bool, macm: bool) -> str:
    """Neurosynth's statistics: for a studyset against the rest of the database, and for
    every MACM's selection against the rest."""
    s = f.settings
    groups = []
    if studyset:
        groups.append(
            "each studyset's experiments against the reference database's other "
            "experiments (database experiments sharing a study and contrast id with "
            "the studyset were removed from the rest, and counted)"
        )
    if macm:
        groups.append(
            "each MACM seed's selected experiments against the rest of the "
            "reference database (Neurosynth's coactivation analysis)"
        )
    return (
        "MKDA chi-square statistics as implemented in Neurosynth "
        + _c("yarkoni2011", "wager2007")
        + " compared "
        + " and ".join(groups)
        + ". Each experiment's map was the union of "
        f"{_fmt(s.get('mkda_radius', 6.0))} mm spheres around its foci; per voxel, a and b "
        "count the active experiments of the selection and of the rest. The uniformity test "
        "(forward inference, P(A|F)) is a one-way chi-square of a against its mean over the "
        "mask; the association test (reverse inference, P(F|A)) is a two-way chi-square "
        "without continuity correction of active/inactive by selected/rest; both have 1 "
        "degree of freedom and their z carries the sign of the deviation. Posterior "
        f"probabilities P(F|A) were also computed with a prior P(F) = {_fmt(s.get('prior', 0.5))}."
        f" The z maps were thresholded at a false discovery rate q = {_fmt(s.get('fdr_q', 0.01))}"
        " (Benjamini-Hochberg over every mask voxel " + _c("benjamini1995") + "), and voxels "
        "where no experiment is active were set to 0, as in Neurosynth."
        + (
            " With the ROI, a studyset's MKDA chi-square ran in the ROI's analysis mask and "
            "both groups were the experiments with a focus in it; MACMs are whole-brain."
            if studyset and (s.get("roi") or s.get("roi_coords"))
            else ""
        )
        + _mkdachi2_counts(f)
    )


def _mkdachi2_counts(f: Facts) -> str:
    parts = []
    for s in f.studysets:
        m = s.analyses.get("mkdachi2")
        if isinstance(m, dict) and "n_selected" in m:
            parts.append(
                f"{_n(m['n_selected'])} against {_n(m.get('n_unselected'))} for "
                f"{s.label} ({_n(m.get('removed_overlap') or 0)} database "
                "experiments in the studyset removed)"
            )
    return (" Experiments compared: " + _list(parts) + ".") if parts else ""


def _data(f: Facts) -> str:
    roi = bool(f.settings.get("roi") or f.settings.get("roi_coords"))
    parts = []
    for s in f.studysets:
        parts.append(f"{s.label} ({_n(s.n_experiments)} experiments, {_n(s.n_foci)} foci)")
    if not parts:
        return ""
    return (
        "Studysets analysed: "
        + _list(parts)
        + (
            "; with the ROI, only experiments with at least one focus in the analysis mask "
            "entered, and only their foci in the mask."
            if roi
            else "."
        )
    )


def _sample_sizes_and_terms(f: Facts) -> str:
    """What --default-sample-size and --term did (empty when neither was used)."""
    s = f.settings
    text = ""
    n = s.get("default_sample_size")
    if n and not s.get("kernel_fwhm"):
        text += (
            f" Experiments without a reported sample size (Neurosynth and NeuroQuery "
            f"report none) were assigned N = {_fmt(n)}, which sets their kernel width; "
            "how many experiments this concerns is stated in every output's sidecar."
        )
    terms = list(s.get("terms") or ())
    if terms:
        vocab = s.get("term_vocab")
        text += (
            " Studysets were defined by terms of the reference database's vocabulary"
            + (f" (feature set {vocab})" if vocab else "")
            + ": "
            + _list([f"'{t}'" for t in terms])
            + "; a study entered a term's studyset "
            f"when its weight for the term (tf-idf) was at least "
            f"{_fmt(s.get('term_threshold', 0.001))}, as in Neurosynth and NiMARE, each "
            "study (all its tables pooled) being one experiment, and each term studyset "
            "was tested against the base rate of the whole database."
        )
    return text


def _macm_counts(f: Facts) -> str:
    parts = []
    for s in f.studysets:
        m = s.analyses.get("macm")
        seeds = m.get("seeds") if isinstance(m, dict) else None
        for name, v in seeds.items() if isinstance(seeds, dict) else ():
            if isinstance(v, dict) and "n_selected" in v:
                parts.append(f"{_n(v['n_selected'])} for {s.label} (seed {name})")
    return (" Experiments selected: " + _list(parts) + ".") if parts else ""


def methods_paragraphs(
    facts: Facts | str,
    settings: dict | None = None,
    analyses: set | None = None,
    talairach: bool = False,
    device: str = "",
) -> list[str]:
    """Methods text generated from what ran: database, ROI rule, inference, counts."""
    f = (
        facts
        if isinstance(facts, Facts)
        else Facts(str(facts), dict(settings or {}), set(analyses or ()), talairach, device)
    )
    s = f.settings
    fwhm = s.get("kernel_fwhm")
    merge = s.get("merge_contrasts", True)
    roi = bool(s.get("roi") or s.get("roi_coords"))
    kernel = (
        f"Gaussian kernels of a fixed {_fmt(fwhm)} mm FWHM centred on its foci"
        if fwhm
        else "Gaussian kernels centred on its foci, with a width derived from the "
        "experiment's sample size " + _c("eickhoff2009")
    )
    out = []
    p = (
        f"Coordinate-based meta-analyses were performed with csale_app {f.version}, which "
        "re-implements the activation likelihood estimation (ALE) algorithm "
        + _c("turkeltaub2002", "eickhoff2009", "eickhoff2012", "turkeltaub2012")
        + " as in NiMARE 0.22 "
        + _c("salo2023")
        + ". All maps are on the MNI152NLin6Asym "
        f"2 mm template within the {s.get('brain_mask', 'brain')} mask. "
    )
    if f.talairach:
        p += (
            "Talairach coordinates were converted to MNI space with the tal2icbm "
            "transform " + _c("lancaster2007") + ". "
        )
    p += (
        "Contrasts of the same study were "
        + (
            "merged into one experiment (foci pooled) "
            "to limit within-group effects " + _c("turkeltaub2012")
            if merge
            else "treated as separate experiments"
        )
        + ". Each experiment's modelled activation map "
        f"was the voxel-wise maximum of {kernel}, and ALE was computed as the voxel-wise "
        "union of these maps. " + (_data(f) if {"ale", "csale"} & f.analyses else "")
    )
    p += _sample_sizes_and_terms(f)
    out.append(p.strip())
    if roi and ({"ale", "csale"} & f.analyses):
        out.append(_roi_rule(f))
    if "ale" in f.analyses:
        out.append("ALE: " + _ale_inference(f) + ".")
    if "csale" in f.analyses:
        p = (
            "C-SALE " + _c("magielse2025") + " tests convergence beyond the base rate of "
            "reported activations, following the specific-ALE approach "
            + _c("langner2014")
            + ": "
            + _csale_inference(f, roi=_has_roi(f))
        )
        sub = s.get("subsamples", 0)
        if sub:
            p += " " + _subsampling(f, int(sub))
        out.append(p + " " + _database(f))
    if "macm" in f.analyses:
        seeds = {
            "roi": "the region of interest",
            "clusters": "the significant C-SALE clusters (together)",
            "each-cluster": "each significant C-SALE cluster",
        }
        kind = s.get("macm_seed")
        seed_text = (
            seeds.get(kind, str(kind))
            if kind
            else "the significant C-SALE clusters (the region of interest when C-SALE did not run)"
        )
        cov = s.get("macm_coverage")
        if cov is not None:
            rule = (
                f"whose {_fmt(s.get('mkda_radius', 6.0))} mm spheres around their foci "
                f"covered more than {100 * float(cov):g}% of the seed voxels"
            )
        elif s.get("roi_coords") and (kind or "roi") == "roi":
            rule = f"with a focus within {_fmt(s.get('roi_radius', 10.0))} mm of a seed point"
        else:
            rule = "with at least one focus in the seed"
        p = (
            "Meta-analytic connectivity modelling (MACM) "
            + _c("laird2009", "robinson2010")
            + f" used as seed {seed_text}: experiments of the reference database "
            + rule
            + " were selected. The MACM is whole-brain: its ALE and C-SALE run in the whole "
            "brain mask, and the ROI restricts neither the nulls nor the reported results. "
            "Its ALE: "
            + _ale_inference(f)
            + ". Its C-SALE (specific ALE "
            + _c("langner2014")
            + ", base rate from the whole reference database): "
            + _csale_inference(f, "the brain mask")
            + _macm_counts(f)
        )
        if "csale" not in f.analyses:
            p += " " + _database(f)
        out.append(p)
    if {"mkdachi2", "macm"} & f.analyses:
        p = _mkdachi2(f, "mkdachi2" in f.analyses, "macm" in f.analyses)
        if not {"csale", "macm"} & f.analyses:
            p += " " + _database(f)
        out.append(p)
    out.append(REUSE_RULE)
    tail = (
        "Per-cluster contributions of experiments were quantified with the jackknife "
        "(share of the cluster's ALE lost when an experiment is left out) and by counting "
        "each experiment's foci in the cluster, as in NiMARE. Peaks were labelled with the "
        "Harvard-Oxford cortical "
        + _c("desikan2006")
        + ", AAL3 subcortical "
        + _c("rolls2020")
        + " and SUIT cerebellar "
        + _c("diedrichsen2009")
        + " atlases. "
        "Where a thresholded map has significant voxels in the cerebellum, they were "
        "counted per SUIT lobule (the lobular atlas resampled nearest-neighbour to the "
        "2 mm grid) and the map was shown on the SUIT flatmap "
        + _c("diedrichsen2015")
        + ", sampled between the white and pial cerebellar surfaces in MNI152NLin6Asym "
        "with SUITPy."
    )
    if s.get("random_seed") is not None:
        tail += f" The random seed was {s['random_seed']}"
        tail += f"; computations ran on {f.device}." if f.device else "."
    out.append(tail)
    return out
