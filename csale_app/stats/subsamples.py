"""C-SALE on random subsamples of a studyset, as the study ran it (Magielse et al. 2025,
``run_meta.py``, ``plot_common_flatmap``, ``load_results``).

Each subsample is a set of experiments drawn without replacement, sized as a count (the
study's ``n-25``) or a fraction of the studyset (``p-02``). Its C-SALE yields both
thresholded maps; across subsamples the share of subsamples in which a voxel survives is
mapped for each rule (the study mapped the cluster-extent rule), and each subsample's
unthresholded z map is correlated with the full sample's inside the report mask (the ROI).

Subsamples are independent units (:func:`subsample_units`), so a Dask cluster runs them side
by side (:func:`csale_app.tasks.run_all`); each unit's draw and null seed depend only on the
run's seed and its index, so the results do not depend on how the units are run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from .. import names
from ..io.experiments import Experiments
from ..kernels.plan import Grid
from .csale import CSALEParams, run_csale
from .montecarlo import NullRun

LOG = logging.getLogger(__name__)

#: Seed offset between subsamples: a prime, so subsample seeds of nearby user seeds differ.
SUBSAMPLE_SEED_STEP = 7919


def subsample_count(size: int | float, n_experiments: int) -> int:
    """Experiments per subsample: ``size`` itself (a count, int) or round(size * n) (a
    fraction in (0, 1), float). ValueError, with the reason, unless 2 <= count < n."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(
        size, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"subsample size {size!r} is neither a count nor a fraction")
    if isinstance(size, (int, np.integer)):
        count, what = int(size), f"a subsample size of {int(size)}"
    elif 0 < size < 1:
        count = int(round(float(size) * n_experiments))
        what = f"a subsample fraction of {float(size):g} ({count} of {n_experiments})"
    else:
        raise ValueError(
            f"subsample size {size!r}: a count must be an integer, a fraction must lie in (0, 1)"
        )
    if count < 2:
        raise ValueError(f"{what} leaves fewer than 2 experiments per subsample")
    if count >= n_experiments:
        raise ValueError(
            f"{what} is not smaller than the studyset's {n_experiments} "
            "experiments, so every subsample would be the full studyset"
        )
    return count


def subsample_seed(seed: int, index: int) -> int:
    """Null seed of subsample ``index`` (0-based)."""
    return (seed + SUBSAMPLE_SEED_STEP * (index + 1)) % 2**64


def draw_subsample(n_experiments: int, count: int, seed: int, index: int) -> np.ndarray:
    """Sorted indices of the experiments of subsample ``index``, without replacement."""
    gen = np.random.default_rng([seed, index])
    return np.sort(gen.choice(n_experiments, size=count, replace=False))


@dataclass(frozen=True)
class SubsampleResult:
    index: int  # 0-based
    experiments: np.ndarray  # indices into the studyset's experiments
    seed: int  # of its null
    extent: np.ndarray  # bool per analysis voxel: in the cluster-extent map
    significant: np.ndarray  # bool per analysis voxel: in a cluster-FWE significant cluster
    correlation: float  # Pearson r of its z map with the full sample's, in the report mask


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r in float64; NaN when either map is constant (r is undefined)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    return float((da * db).sum() / denom) if denom > 0 else float("nan")


def run_subsample(
    exps: Experiments,
    db: Experiments,
    grid: Grid,
    affine: np.ndarray,
    report_mask: np.ndarray | None,
    params: CSALEParams,
    run: NullRun,
    full_z: np.ndarray,
    count: int,
    index: int,
) -> SubsampleResult:
    keep = draw_subsample(exps.n_experiments, count, params.seed, index)
    seed = subsample_seed(params.seed, index)
    res = run_csale(
        exps.subset(keep),
        db,
        grid,
        affine,
        report_mask,
        replace(params, seed=seed),
        replace(run, store=None),
    )
    inside = slice(None) if report_mask is None else report_mask
    r = pearson(res.maps[names.Z][inside], full_z[inside])
    return SubsampleResult(index, keep, seed, res.extent_labels > 0, res.significant_labels > 0, r)


def subsample_units(
    exps: Experiments,
    db: Experiments,
    grid: Grid,
    affine: np.ndarray,
    report_mask: np.ndarray | None,
    params: CSALEParams,
    run: NullRun,
    full_z: np.ndarray,
    *,
    n_subsamples: int,
    size: int | float,
) -> list[Callable[[], SubsampleResult]]:
    """One independent unit per subsample (subsample nulls are not checkpointed)."""
    count = subsample_count(size, exps.n_experiments)
    return [
        partial(run_subsample, exps, db, grid, affine, report_mask, params, run, full_z, count, s)
        for s in range(n_subsamples)
    ]


class ShareMaps(NamedTuple):
    """Per voxel, the share of subsamples in which it survives each rule."""

    extent: np.ndarray  # the study's cluster-extent rule
    cluster_fwe: np.ndarray  # cluster-level FWE


def share_maps(results: list[SubsampleResult]) -> ShareMaps:
    """The share of subsamples in which each voxel survives each rule."""
    n = len(results)
    extent = np.sum([r.extent for r in results], axis=0, dtype=np.float64) / n
    fwe = np.sum([r.significant for r in results], axis=0, dtype=np.float64) / n
    return ShareMaps(extent.astype(np.float32), fwe.astype(np.float32))


def correlation_table(results: list[SubsampleResult], exps: Experiments) -> pd.DataFrame:
    """One row per subsample: its size, null seed, correlation and surviving voxels."""
    return pd.DataFrame(
        {
            "subsample": [r.index + 1 for r in results],
            "n_experiments": [len(r.experiments) for r in results],
            "seed": [str(r.seed) for r in results],
            "pearson_r": [r.correlation for r in results],
            "extent_voxels": [int(r.extent.sum()) for r in results],
            "significant_voxels": [int(r.significant.sum()) for r in results],
            "experiment_ids": ["|".join(str(exps.ids[i]) for i in r.experiments) for r in results],
        }
    )
