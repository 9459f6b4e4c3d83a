"""MKDA chi-square against NiMARE 0.22.1 on NiMARE's n-back vs flanker studyset.

``MKDAChi2(kernel__r=6)`` + ``FDRCorrector(method="indep", alpha=0.01)`` on the same
experiments (our parsed and merged n-back and flanker experiments, handed to NiMARE as
MNI coordinates) over the same brain mask: active counts exact; chi2, p, z and the
probabilities within 1e-5 relative wherever at least one study is active (elsewhere ours
are 0, Neurosynth's ``min_studies``); the same FDR survivors.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from csale_app.io.experiments import build_experiments
from csale_app.io.readers import read_studyset
from csale_app.kernels.plan import build_grid
from csale_app.kernels.spheres import active_counts, sphere_offsets
from csale_app.stats.mkdachi2 import mkdachi2

Q = 0.01


def nimare_dataset(exps, mask_img):
    from nimare.dataset import Dataset

    data = {}
    for e, eid in enumerate(exps.ids):
        xyz = exps.xyz_mni[exps.focus_start[e] : exps.focus_start[e + 1]]
        data[f"s{eid}"] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": "MNI",
                        "x": xyz[:, 0].tolist(),
                        "y": xyz[:, 1].tolist(),
                        "z": xyz[:, 2].tolist(),
                    }
                }
            }
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dataset(data, mask=mask_img)


#: n-back against flanker; and, for association survivors (n-back against flanker has
#: none at any q), the n-back experiments with a focus within 12 mm of the left anterior
#: insula / frontal operculum against flanker.
CASES = {"nback_vs_flanker": None, "nback_seed_vs_flanker": (-32.0, 22.0, 2.0)}


@pytest.fixture(scope="module", params=list(CASES))
def both(request, demo_input, brain):
    img, mask = brain
    exps = [
        build_experiments(read_studyset(demo_input / f"{t}.tsv"), img.affine, mask.shape)
        for t in ("nback", "flanker")
    ]
    point = CASES[request.param]
    if point is not None:
        near = np.linalg.norm(exps[0].xyz_mni - point, axis=1) <= 12.0
        hits = np.add.reduceat(near.astype(int), exps[0].focus_start[:-1]) > 0
        exps[0] = exps[0].subset(hits)
        assert 15 <= exps[0].n_experiments < 100
    grid = build_grid(mask)
    offsets = sphere_offsets(6.0, img.affine)
    counts = [
        active_counts(e.ijk, e.focus_start, np.zeros(e.n_experiments, int), 1, mask, offsets)[0]
        for e in exps
    ]
    ours = mkdachi2(
        counts[0], counts[1], exps[0].n_experiments, exps[1].n_experiments, prior=0.5, q=Q
    )
    from nimare.correct import FDRCorrector
    from nimare.meta.cbma.mkda import MKDAChi2

    mask_img = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = MKDAChi2(kernel__r=6)
        res = meta.fit(nimare_dataset(exps[0], mask_img), nimare_dataset(exps[1], mask_img))
        cres = FDRCorrector(method="indep", alpha=Q).transform(res)
    return exps, grid, counts, ours, cres, request.param


def test_counts_are_exact(both):
    exps, grid, counts, ours, cres, _ = both
    # NiMARE's P(A|F) and P(A|~F) times the group sizes are its active counts
    for c, e, name in zip(counts, exps, ("prob_desc-group1", "prob_desc-group2")):
        ref = cres.get_map(name, return_type="array").astype(np.float64) * e.n_experiments
        assert np.array_equal(np.rint(ref).astype(int), c)
        assert np.abs(ref - np.rint(ref)).max() < 1e-3
    assert (counts[0] > 0).sum() > 5000


NAMES = {  # NiMARE -> ours
    "z_desc-uniformity": "stat-z_desc-uniformity",
    "z_desc-association": "stat-z_desc-association",
    "chi2_desc-uniformity": "stat-chi2_desc-uniformity",
    "chi2_desc-association": "stat-chi2_desc-association",
    "p_desc-uniformity": "stat-p_desc-uniformity",
    "p_desc-association": "stat-p_desc-association",
    "logp_desc-uniformity": "stat-logp_desc-uniformity",
    "logp_desc-association": "stat-logp_desc-association",
    "prob_desc-A": "stat-prob_desc-A",
    "prob_desc-AgF": "stat-prob_desc-AgF",
    "prob_desc-FgA": "stat-prob_desc-FgA",
    "prob_desc-AgF_prior": "stat-prob_desc-AgFprior",
    "prob_desc-FgA_prior": "stat-prob_desc-FgAprior",
}


@pytest.mark.parametrize("nimare_name", list(NAMES))
def test_maps_match_nimare_where_a_study_is_active(both, nimare_name):
    _, _, counts, ours, cres, _ = both
    active = (counts[0] + counts[1]) > 0
    ref = cres.get_map(nimare_name, return_type="array").astype(np.float64)
    got = ours.maps[NAMES[nimare_name]]
    # NiMARE stores float32 maps: compare at float32 precision (1e-5 relative), and p
    # maps where p is a normal float32 (smaller p are compared on the logp map)
    sel = active & ((np.abs(ref) > 1e-30) if nimare_name.startswith("p_") else True)
    np.testing.assert_allclose(got[sel], ref[sel], rtol=1e-5, atol=1e-7)
    assert not np.any(got[~active]) or nimare_name.startswith("p_")


@pytest.mark.parametrize("test", ["uniformity", "association"])
def test_same_fdr_survivors(both, test):
    _, _, counts, ours, cres, _ = both
    active = (counts[0] + counts[1]) > 0
    p_fdr = cres.get_map(f"p_desc-{test}_level-voxel_corr-FDR_method-indep", return_type="array")
    ref = (p_fdr <= Q) & active
    got = ours.maps[f"stat-z_desc-{test}_level-voxel_corr-FDR"] != 0
    if test == "uniformity" or "seed" in both[-1]:
        assert ref.sum() > 0
    assert np.array_equal(got, ref), (got.sum(), ref.sum())
    z_ref = cres.get_map(f"z_desc-{test}", return_type="array")
    np.testing.assert_allclose(
        ours.maps[f"stat-z_desc-{test}_level-voxel_corr-FDR"][got], z_ref[got], rtol=1e-5
    )
