"""MACM selection: which experiments of the reference database a seed selects (an image
seed: a focus in it, or Neurosynth's sphere coverage of it; a coordinate seed: a focus
within a radius of a point)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..io.experiments import Experiments, foci_per_experiment
from ..kernels.spheres import covered_voxels


class Selection(NamedTuple):
    """A MACM seed's selection of the database's experiments."""

    selected: np.ndarray  # bool per experiment
    foci_in_seed: np.ndarray  # per experiment: its foci in the seed (or near its points)


def select_by_seed(
    db: Experiments,
    seed: np.ndarray,
    coverage: float | None = None,
    offsets: np.ndarray | None = None,
) -> Selection:
    """MACM selection by an image seed (template-grid mask): experiments with >= 1 focus
    in ``seed``, or, with ``coverage``, whose union of spheres (``offsets``, see
    :func:`csale_app.kernels.spheres.sphere_offsets`) covers more than that share of the
    seed (Neurosynth's rule; 0 = any overlap). Returns (selected bool per experiment,
    foci-in-seed counts)."""
    in_seed = seed[tuple(db.ijk.T)] if db.n_foci else np.zeros(0, bool)
    counts = foci_per_experiment(db, in_seed)
    if coverage is None:
        return Selection(counts > 0, counts)
    covered = covered_voxels(db.ijk, db.focus_start, seed, offsets)
    return Selection(covered / max(int(np.count_nonzero(seed)), 1) > coverage, counts)


def select_by_points(db: Experiments, points, radius_mm: float) -> Selection:
    """MACM selection by a coordinate seed: experiments with a focus (MNI) within
    ``radius_mm`` of a seed point (Neurosynth's ``get_studies(peaks=..., r=...)``, NiMARE's
    ``get_studies_by_coordinate``). Returns (selected, foci-within-radius counts)."""
    near = np.zeros(db.n_foci, dtype=bool)
    for point in np.asarray(points, dtype=np.float64).reshape(-1, 3):
        near |= ((db.xyz_mni - point) ** 2).sum(axis=1) <= radius_mm**2
    counts = foci_per_experiment(db, near)
    return Selection(counts > 0, counts)
