"""Methods boilerplate (with the run's actual parameters), references and BibTeX.

Plain text only (no web addresses): DOIs are given as ``doi:...``.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        return (f"{shown} ({self.year}). {self.title}. {self.journal}, {vol}, "
                f"{self.pages.replace('--', '-')}. doi:{self.doi}")

    def bibtex(self) -> str:
        fields = [("author", self.authors), ("title", "{" + self.title + "}"),
                  ("journal", self.journal), ("year", str(self.year)), ("volume", self.volume),
                  ("number", self.number), ("pages", self.pages), ("doi", self.doi)]
        body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields if v)
        return f"@article{{{self.key},\n{body}\n}}\n"


REFERENCES = {r.key: r for r in [
    Ref("turkeltaub2002", "Turkeltaub et al., 2002",
        "Turkeltaub, Peter E. and Eden, Guinevere F. and Jones, Karen M. and Zeffiro, Thomas A.",
        "Meta-analysis of the functional neuroanatomy of single-word reading: method and "
        "validation", "NeuroImage", 2002, "16", "3", "765--780", "10.1006/nimg.2002.1131"),
    Ref("turkeltaub2012", "Turkeltaub et al., 2012",
        "Turkeltaub, Peter E. and Eickhoff, Simon B. and Laird, Angela R. and Fox, Mick and "
        "Wiener, Martin and Fox, Peter",
        "Minimizing within-experiment and within-group effects in activation likelihood "
        "estimation meta-analyses", "Human Brain Mapping", 2012, "33", "1", "1--13",
        "10.1002/hbm.21186"),
    Ref("eickhoff2009", "Eickhoff et al., 2009",
        "Eickhoff, Simon B. and Laird, Angela R. and Grefkes, Christian and Wang, Ling E. and "
        "Zilles, Karl and Fox, Peter T.",
        "Coordinate-based activation likelihood estimation meta-analysis of neuroimaging data: "
        "a random-effects approach based on empirical estimates of spatial uncertainty",
        "Human Brain Mapping", 2009, "30", "9", "2907--2926", "10.1002/hbm.20718"),
    Ref("eickhoff2012", "Eickhoff et al., 2012",
        "Eickhoff, Simon B. and Bzdok, Danilo and Laird, Angela R. and Kurth, Florian and "
        "Fox, Peter T.", "Activation likelihood estimation meta-analysis revisited",
        "NeuroImage", 2012, "59", "3", "2349--2361", "10.1016/j.neuroimage.2011.09.017"),
    Ref("eickhoff2016", "Eickhoff et al., 2016",
        "Eickhoff, Simon B. and Nichols, Thomas E. and Laird, Angela R. and Hoffstaedter, "
        "Felix and Amunts, Katrin and Fox, Peter T. and Bzdok, Danilo and Eickhoff, Claudia R.",
        "Behavior, sensitivity, and power of activation likelihood estimation characterized "
        "by massive empirical simulation", "NeuroImage", 2016, "137", "", "70--85",
        "10.1016/j.neuroimage.2016.04.072"),
    Ref("langner2014", "Langner et al., 2014",
        "Langner, Robert and Rottschy, Claudia and Laird, Angela R. and Fox, Peter T. and "
        "Eickhoff, Simon B.",
        "Meta-analytic connectivity modeling revisited: controlling for activation base rates",
        "NeuroImage", 2014, "99", "", "559--570", "10.1016/j.neuroimage.2014.06.007"),
    Ref("magielse2025", "Magielse et al., 2025",
        "Magielse, Neville and Manoli, Aikaterina and Eickhoff, Simon B. and Fox, Peter T. "
        "and Saberi, Amin and Valk, Sofie L.",
        "A bias-accounting meta-analytic approach refines and expands the cerebellar "
        "behavioral topography", "Neuroscience and Biobehavioral Reviews", 2025, "179", "",
        "106418", "10.1016/j.neubiorev.2025.106418"),
    Ref("laird2009", "Laird et al., 2009",
        "Laird, Angela R. and Eickhoff, Simon B. and Li, Karl and Robin, Donald A. and "
        "Glahn, David C. and Fox, Peter T.",
        "Investigating the functional heterogeneity of the default mode network using "
        "coordinate-based meta-analytic modeling", "Journal of Neuroscience", 2009, "29",
        "46", "14496--14505", "10.1523/JNEUROSCI.4004-09.2009"),
    Ref("robinson2010", "Robinson et al., 2010",
        "Robinson, Jennifer L. and Laird, Angela R. and Glahn, David C. and Lovallo, William R. "
        "and Fox, Peter T.",
        "Metaanalytic connectivity modeling: delineating the functional connectivity of the "
        "human amygdala", "Human Brain Mapping", 2010, "31", "2", "173--184",
        "10.1002/hbm.20854"),
    Ref("lancaster2007", "Lancaster et al., 2007",
        "Lancaster, Jack L. and Tordesillas-Guti{\\'e}rrez, Diana and Martinez, Michael and "
        "Salinas, Felipe and Evans, Alan and Zilles, Karl and Mazziotta, John C. and Fox, "
        "Peter T.", "Bias between MNI and Talairach coordinates analyzed using the ICBM-152 "
        "brain template", "Human Brain Mapping", 2007, "28", "11", "1194--1205",
        "10.1002/hbm.20345"),
    Ref("salo2023", "Salo et al., 2023",
        "Salo, Taylor and Yarkoni, Tal and Nichols, Thomas E. and Poline, Jean-Baptiste and "
        "Bilgel, Murat and Bottenhorn, Katherine L. and Jarecka, Dorota and Kent, James D. and "
        "Kimbler, Adam and Nielson, Dylan M. and Oudyk, Kendra M. and Peraza, Julio A. and "
        "P{\\'e}rez, Alexandre and Reeders, Puck C. and Yanes, Julio A. and Laird, Angela R.",
        "NiMARE: Neuroimaging Meta-Analysis Research Environment", "Aperture Neuro", 2023,
        "3", "", "1--32", "10.52294/001c.87681"),
    Ref("diedrichsen2009", "Diedrichsen et al., 2009",
        "Diedrichsen, J{\\\"o}rn and Balsters, Joshua H. and Flavell, Jonathan and Cussans, "
        "Emma and Ramnani, Narender", "A probabilistic MR atlas of the human cerebellum",
        "NeuroImage", 2009, "46", "1", "39--46", "10.1016/j.neuroimage.2009.01.045"),
    Ref("rolls2020", "Rolls et al., 2020",
        "Rolls, Edmund T. and Huang, Chu-Chung and Lin, Ching-Po and Feng, Jianfeng and "
        "Joliot, Marc", "Automated anatomical labelling atlas 3", "NeuroImage", 2020, "206",
        "", "116189", "10.1016/j.neuroimage.2019.116189"),
    Ref("desikan2006", "Desikan et al., 2006",
        "Desikan, Rahul S. and S{\\'e}gonne, Florent and Fischl, Bruce and Quinn, Brian T. and "
        "Dickerson, Bradford C. and Blacker, Deborah and Buckner, Randy L. and Dale, Anders M. "
        "and Maguire, R. Paul and Hyman, Bradley T. and Albert, Marilyn S. and Killiany, "
        "Ronald J.", "An automated labeling system for subdividing the human cerebral cortex "
        "on MRI scans into gyral based regions of interest", "NeuroImage", 2006, "31", "3",
        "968--980", "10.1016/j.neuroimage.2006.01.021"),
]}


def _plain(text: str) -> str:
    """LaTeX accents in author names -> Unicode for the HTML reference list."""
    for a, b in (("{\\'e}", "é"), ("{\\\"o}", "ö")):
        text = text.replace(a, b)
    return text


def reference_list() -> list[dict]:
    return [{"key": r.key, "text": _plain(r.text())} for r in
            sorted(REFERENCES.values(), key=lambda r: (r.cite.split()[0], r.year))]


def bibtex() -> str:
    return "\n".join(r.bibtex() for r in REFERENCES.values())


def _c(*keys: str) -> str:
    return "(" + "; ".join(REFERENCES[k].cite for k in keys) + ")"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def methods_paragraphs(version: str, settings: dict, analyses: set[str],
                       talairach: bool = False, device: str = "") -> list[str]:
    """Methods text for the analyses that ran, with the run's parameters."""
    s = dict(settings or {})
    n_iters = s.get("n_iters", 10000)
    vthr = s.get("voxel_thresh", 0.001)
    alpha = s.get("cluster_alpha", 0.05)
    fwhm = s.get("kernel_fwhm")
    merge = s.get("merge_contrasts", True)
    seed = s.get("random_seed")
    mask = s.get("brain_mask", "brain")
    out = []
    kernel = (f"Gaussian kernels of a fixed {_fmt(fwhm)} mm FWHM centred on its foci" if fwhm
              else "Gaussian kernels centred on its foci, with a width derived from the "
              "experiment's sample size " + _c("eickhoff2009"))
    p = (f"Coordinate-based meta-analyses were performed with csale_app {version}, which "
         "re-implements the activation likelihood estimation (ALE) algorithm "
         + _c("turkeltaub2002", "eickhoff2009", "eickhoff2012", "turkeltaub2012")
         + " as in NiMARE 0.22 " + _c("salo2023") + ". All maps are on the MNI152NLin6Asym "
         f"2 mm template within the {mask} mask. ")
    if s.get("roi"):
        p += (f"With a region of interest ({s['roi']}), ALE and C-SALE were run in the same "
              f"analysis mask, the region of interest dilated by "
              f"{_fmt(s.get('roi_dilation_mm', 6.0))} mm (within the brain mask), and results "
              "are reported within the region of interest. ")
    if talairach:
        p += ("Talairach coordinates were converted to MNI space with the tal2icbm "
              "transform " + _c("lancaster2007") + ". ")
    p += ("Contrasts of the same study were " + ("merged into one experiment (foci pooled) "
          "to limit within-group effects " + _c("turkeltaub2012") if merge else
          "treated as separate experiments") + ". Each experiment's modelled activation map "
          f"was the voxel-wise maximum of {kernel}, and ALE was computed "
          "as the voxel-wise union of these maps.")
    out.append(p)
    if "ale" in analyses:
        out.append(
            "ALE: uncorrected p-values came from the analytical null distribution "
            + _c("eickhoff2012") + ". Family-wise error was controlled at the cluster level "
            f"with a Monte Carlo null of {n_iters} iterations in which every experiment's "
            "foci were redistributed uniformly in the mask; clusters (faces connectivity) "
            f"were formed at an uncorrected voxel-wise threshold of p < {_fmt(vthr)} and kept "
            f"when their size exceeded the {100 * (1 - float(alpha)):g}th percentile of the "
            f"null distribution of maximum cluster sizes (cluster-level FWE p < {_fmt(alpha)}) "
            + _c("eickhoff2016") + ".")
    if "csale" in analyses:
        null = s.get("csale_null", "probabilistic")
        sub = s.get("subsamples", 0)
        p = ("C-SALE " + _c("magielse2025") + " tests convergence beyond the base rate of "
             "reported activations, following the specific-ALE approach " + _c("langner2014")
             + ". The null distribution kept each experiment's number of foci and drew their "
             + ("positions from a base-rate map (the sum of the kernels of all foci in the "
                "reference database, restricted to the analysis mask and normalised to sum 1)"
                if null == "probabilistic" else
                "positions from the foci of the reference database") +
             f" ({n_iters} iterations); voxel-wise p-values were thresholded at p < "
             f"{_fmt(vthr)}")
        k = s.get("min_cluster_size")
        p += (f" with a minimum cluster extent of {k} voxels" if k else "") + \
            f", and cluster-level FWE p < {_fmt(alpha)} was computed from the permutations."
        if sub:
            p += (f" Stability was assessed with {sub} subsamples of "
                  f"{100 * float(s.get('subsample_fraction', 0.8)):g}% of the experiments.")
        out.append(p)
    if "macm" in analyses:
        seeds = {"roi": "the region of interest", "clusters": "the significant C-SALE "
                 "clusters (together)", "each-cluster": "each significant C-SALE cluster"}
        seed_kind = s.get("macm_seed")
        seed_text = seeds.get(seed_kind, str(seed_kind)) if seed_kind else \
            "the significant C-SALE clusters (the region of interest when C-SALE did not run)"
        cov = s.get("macm_coverage")
        out.append(
            "Meta-analytic connectivity modelling (MACM) " + _c("laird2009", "robinson2010")
            + f" used as seed {seed_text}: experiments of the reference database "
            + (f"whose foci covered at least {100 * float(cov):g}% of the seed voxels"
               if cov else "with at least one focus in the seed")
            + " were selected, and whole-brain ALE and specific ALE (base rate from the whole "
            "database) " + _c("langner2014") + " were computed on the selection with the "
            "same inference as above.")
    tail = ("Per-cluster contributions of experiments were quantified with the jackknife "
            "(share of the cluster's ALE lost when an experiment is left out) and by counting "
            "each experiment's foci in the cluster, as in NiMARE. Peaks were labelled with the "
            "Harvard-Oxford cortical " + _c("desikan2006") + ", AAL3 subcortical "
            + _c("rolls2020") + " and SUIT cerebellar " + _c("diedrichsen2009") + " atlases.")
    if seed is not None:
        tail += f" The random seed was {seed}"
        tail += f"; computations ran on {device}." if device else "."
    out.append(tail)
    return out
