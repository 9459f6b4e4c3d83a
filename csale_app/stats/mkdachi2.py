"""Neurosynth's meta-analysis statistics (MKDA chi-square; Yarkoni et al. 2011).

Arrays in, arrays out: given, per voxel of the analysis mask, how many experiments of the
selected group (a_v of n_a) and of the rest (b_v of n_b) are active (their union of
spheres covers the voxel), compute what ``neurosynth.analysis.meta.MetaAnalysis`` and
NiMARE's ``MKDAChi2`` compute:

- probabilities P(A) = (a+b)/(n_a+n_b), P(A|F) = a/n_a, P(F|A) = P(A|F) P(F) / P(A) with
  P(F) = n_a/(n_a+n_b), and with a prior P(F) = ``prior``: P(A)_prior = prior P(A|F) +
  (1-prior) P(A|~F) (NiMARE's ``prob_desc-AgF_prior``) and P(F|A)_prior = P(A|F) prior /
  P(A)_prior;
- uniformity test ("forward inference": is the voxel active in more selected experiments
  than the average voxel?): one-way chi-square of a_v against the mask mean, 1 df, sign of
  a_v - mean(a);
- association test ("reverse inference": is activation at the voxel more likely in the
  selected experiments than in the rest?): two-way 2x2 chi-square of (a, b, n_a-a, n_b-b),
  1 df, no Yates correction, sign of P(A|F) - P(A|~F);
- p = P(chi2_1 > x), z = sqrt(x) * sign (exactly |Phi^-1(p/2)|, Neurosynth's p_to_z, which
  caps p at 1e-240, i.e. |z| <= 33.1; ours has no cap), logp = -log10 p without underflow;
  the written p map is floored at the smallest positive float32 (1.4e-45), as NiMARE's;
- Benjamini-Hochberg FDR at q over every mask voxel (Neurosynth's ``stats.fdr``): the
  largest sorted p_(k) <= k q / m is the threshold, voxels with p <= it survive;
- voxels where no experiment is active are set to 0 (p to 1) in every map, after the FDR
  threshold is found (Neurosynth's ``min_studies=1``).

Degenerate cells, where the chi-square is 0/0, get chi2 = 0 (p = 1): a voxel active in
every experiment of both groups (Neurosynth's ``two_way`` gives chi2 = 2 there, from its
"invalid voxel" rule whose comment intends p = 1; NiMARE copies the 2), and a uniformity
test whose mean count is 0 or n_a (NiMARE's rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .. import names
from ..errors import EmptySelectionError

LOG = logging.getLogger(__name__)

#: the smallest positive float32: p maps are written as float32 and a p of 0 is no p-value
P_FLOOR = float(np.nextafter(np.float32(0), np.float32(1)))
PROBABILITIES = ("A", "AgF", "FgA", "AgFprior", "FgAprior")


def one_way_chi2(counts: np.ndarray, n: int) -> np.ndarray:
    """Chi-square of each count against the mean count, counts out of ``n`` (1 df)."""
    term = np.asarray(counts, dtype=np.float64)
    expected = term.mean() if term.size else 0.0
    denominator = expected * (n - expected)
    if denominator == 0:
        return np.zeros_like(term)
    return (term - expected) ** 2 * n / denominator


def two_way_chi2(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """Pearson chi-square (no Yates) of the 2x2 tables [[a, b], [n_a - a, n_b - b]]."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    total = float(n_a + n_b)
    active = a + b
    denominator = active * (total - active) * n_a * n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = total * (a * n_b - b * n_a) ** 2 / denominator
    return np.where(denominator > 0, chi2, 0.0)


def chi2_p(chi2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, -log10 p) of chi-square values on 1 df; -log10 p stays finite where p
    underflows (log P(|Z| > sqrt(x)) = log 2 + log Phi(-sqrt(x)))."""
    root = np.sqrt(np.asarray(chi2, dtype=np.float64))
    p = special.erfc(root / np.sqrt(2.0))
    logp = -(np.log(2.0) + special.log_ndtr(-root)) / np.log(10.0)
    return p, np.maximum(logp, 0.0)


def fdr_threshold(p: np.ndarray, q: float) -> float:
    """Neurosynth's ``stats.fdr``: the largest sorted p_(k) with p_(k) <= k q / m, or -1
    when there is none (then nothing survives)."""
    s = np.sort(np.asarray(p, dtype=np.float64))
    m = s.shape[0]
    below = np.flatnonzero(s <= np.arange(1, m + 1, dtype=np.float64) * q / m)
    return float(s[below[-1]]) if len(below) else -1.0


@dataclass(frozen=True)
class MKDAChi2Result:
    maps: dict[str, np.ndarray]  # names.MKDACHI2_MAPS -> values per mask voxel
    fdr_p_threshold: dict[str, float]  # test -> p threshold (-1: no voxel survives)
    n_selected: int
    n_unselected: int
    n_inactive_voxels: int  # voxels where no experiment is active (set to 0)
    n_survivors: dict[str, int] = field(default_factory=dict)  # test -> FDR voxels


def check_groups(n_selected: int, n_unselected: int) -> None:
    """Both groups must hold experiments: the tests compare them."""
    if n_selected < 1 or n_unselected < 1:
        which = "selected" if n_selected < 1 else "unselected (the rest of the database)"
        raise EmptySelectionError(
            f"MKDA chi-square: the {which} group holds no experiment ({n_selected} selected,"
            f" {n_unselected} in the rest); the uniformity and association tests need both"
        )


def mkdachi2(
    a: np.ndarray,
    b: np.ndarray,
    n_selected: int,
    n_unselected: int,
    prior: float = 0.5,
    q: float = 0.01,
) -> MKDAChi2Result:
    """Every map of the analysis from the active counts ``a`` (selected, of ``n_selected``)
    and ``b`` (the rest, of ``n_unselected``) per mask voxel."""
    check_groups(n_selected, n_unselected)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"counts must be two 1-D arrays of one length, got {a.shape}, {b.shape}")
    if (a < 0).any() or (a > n_selected).any() or (b < 0).any() or (b > n_unselected).any():
        raise ValueError("active counts must lie in [0, group size]")
    n = n_selected + n_unselected
    inactive = (a + b) == 0
    p_a = (a + b) / n
    p_a_f = a / n_selected
    p_a_u = b / n_unselected
    p_f = n_selected / n
    with np.errstate(divide="ignore", invalid="ignore"):
        p_f_a = np.where(inactive, 0.0, p_a_f * p_f / p_a)
        p_a_prior = prior * p_a_f + (1 - prior) * p_a_u
        p_f_a_prior = np.where(inactive, 0.0, p_a_f * prior / p_a_prior)
    maps = {
        names.mkdachi2_probability(which): values
        for which, values in zip(
            names.MKDACHI2_PROBABILITIES, (p_a, p_a_f, p_f_a, p_a_prior, p_f_a_prior), strict=True
        )
    }
    signs = {"uniformity": np.sign(a - a.mean()), "association": np.sign(p_a_f - p_a_u)}
    chi2s = {
        "uniformity": one_way_chi2(a, n_selected),
        "association": two_way_chi2(a, b, n_selected, n_unselected),
    }
    thresholds, survivors = {}, {}
    for test in names.MKDACHI2_TESTS:
        chi2 = chi2s[test]
        p, logp = chi2_p(chi2)
        z = np.sqrt(chi2) * signs[test]
        thr = fdr_threshold(p, q)  # over the whole mask, before inactive voxels go
        keep = (p <= thr) & ~inactive
        thresholds[test], survivors[test] = thr, int(keep.sum())
        chi2, z, logp = (np.where(inactive, 0.0, x) for x in (chi2, z, logp))
        maps[names.mkdachi2_test("chi2", test)] = chi2
        # floored at the smallest positive float32, as every written p map (NiMARE's rule)
        maps[names.mkdachi2_test("p", test)] = np.clip(np.where(inactive, 1.0, p), P_FLOOR, 1.0)
        maps[names.mkdachi2_test("logp", test)] = logp
        maps[names.mkdachi2_test("z", test)] = z
        maps[names.mkdachi2_fdr(test)] = np.where(keep, z, 0.0)
    return MKDAChi2Result(
        maps, thresholds, int(n_selected), int(n_unselected), int(inactive.sum()), survivors
    )
