"""Report section of an MKDA chi-square analysis (Neurosynth's statistics): what the maps
mean (forward vs reverse inference), the FDR-thresholded z maps, and the group sizes."""

from __future__ import annotations

import numpy as np

from .. import names
from . import discover, figures
from .sections import Section, cuts_for, load_image, guarded
from .tables import anchor, fmt, kv_table

TITLE = "MKDA chi-square (Neurosynth)"

MEANING = {
    "uniformity": (
        "Uniformity test (forward inference, P(A|F)): is the voxel active in more of the "
        "selected experiments than the average voxel is? It shows where the selection "
        "consistently reports activation, like ALE, but says nothing about specificity: "
        "regions active in most tasks appear for almost any selection."
    ),
    "association": (
        "Association test (reverse inference, P(F|A)): is activation at the voxel more "
        "likely in the selected experiments than in the rest of the database? Positive z: "
        "activation there raises the probability that an experiment belongs to the "
        "selection (the posterior map P(F|A) with P(F) = the prior gives that probability); "
        "negative z: the rest of the database activates there more often."
    ),
}
MACM_MEANING = (
    "Coactivation (Neurosynth): the selected experiments are those that activate the seed. "
    "Uniformity shows where they also report activation (forward: regions coactive with the "
    "seed, including regions active in most experiments); association shows regions that "
    "coactivate with the seed more than with the rest of the database (reverse: specific "
    "coactivation)."
)


def _fdr_figure(sec: Section, an: discover.Analysis, test: str, roi_img, q) -> None:
    path = an.map(names.mkdachi2_fdr(test))
    if path is None:
        sec.notices.append(f"No FDR-thresholded {test} map was written.")
        return
    img = load_image(path)
    data = np.nan_to_num(np.asanyarray(img.dataobj))
    n_pos, n_neg = int((data > 0).sum()), int((data < 0).sum())
    title = f"{test.capitalize()} test: z where FDR q = {fmt(q)} keeps the voxel"
    if not (n_pos or n_neg):
        sec.notices.append(f"No voxel survives FDR q = {fmt(q)} in the {test} test.")
        return
    caption = (
        f"{MEANING[test]} Red: positive z ({n_pos} voxels), blue: negative z "
        f"({n_neg} voxels); zero where not significant."
    )
    sec.figures.append(
        figures.slices_figure(
            img,
            title,
            cuts_for(img, roi_img),
            "z",
            cmap="cold_hot",
            symmetric=True,
            caption=caption,
        )
    )
    if n_pos:
        import nibabel as nib

        positive = nib.Nifti1Image(np.where(data > 0, data, 0).astype(np.float32), img.affine)
        sec.figures.append(
            figures.glass_brain_figure(
                positive, f"{test.capitalize()} test: positive FDR-significant z (glass brain)"
            )
        )


def mkdachi2_section(an: discover.Analysis, parent_id: str, roi_img, macm: bool = False) -> Section:
    sec = Section(anchor(parent_id, an.meta), TITLE)
    side = an.sidecar()
    for key, name in (
        ("Method", "Method"),
        ("Comparison", "Groups compared"),
        ("SelectedExperiments", "Selected experiments"),
        ("UnselectedExperiments", "Rest of the database"),
        ("RemovedOverlap", "Database experiments in the studyset (removed)"),
        ("SphereRadiusMM", "Sphere radius (mm)"),
        ("Prior", "Prior P(F)"),
        ("FDRq", "FDR q"),
        ("InactiveVoxels", "Voxels where no study is active (set to 0)"),
    ):
        if key in side:
            sec.info.append((name, fmt(side[key])))
    sec.notices.append(
        MACM_MEANING
        if macm
        else "Forward inference asks where the selected experiments activate; "
        "reverse inference asks where activation tells them apart from the "
        "rest of the database. " + MEANING["uniformity"] + " " + MEANING["association"]
    )
    rows = []
    for test in ("uniformity", "association"):
        path = an.map(names.mkdachi2_fdr(test))
        if path is None:
            continue
        fdr_side = discover.Analysis(an.meta, an.prefix, {"x": path}).sidecar()
        rows.append((f"{test}: FDR p threshold", fmt(fdr_side.get("FDRThresholdP"))))
        rows.append((f"{test}: significant voxels", fmt(fdr_side.get("SignificantVoxels"))))
    if rows:
        sec.tables.append(kv_table("FDR (Benjamini-Hochberg over the mask)", rows))
    for test in ("association", "uniformity"):
        guarded(
            sec,
            f"the {test} map",
            lambda t=test: _fdr_figure(sec, an, t, roi_img, side.get("FDRq")),
        )
    posterior = an.map(names.mkdachi2_probability("FgAprior"))
    if posterior is not None:

        def _posterior():
            img = load_image(posterior)
            sec.figures.append(
                figures.slices_figure(
                    img,
                    f"Posterior probability P(F|A) with P(F) = {fmt(side.get('Prior'))}",
                    cuts_for(img, roi_img),
                    "z",
                    threshold=1e-6,
                    cmap="viridis",
                    caption="Probability that an experiment activating the voxel belongs to the "
                    "selection, had the selection been that share of the experiments "
                    "(unthresholded).",
                )
            )

        guarded(sec, "the posterior probability map", _posterior)
    return sec.finish()
