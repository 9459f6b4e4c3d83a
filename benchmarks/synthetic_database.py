"""A synthetic Neurosynth-size reference database: one TSV, fixed seed.

    python benchmarks/synthetic_database.py OUT.tsv [--experiments 14000] [--seed 2025]

14,000 experiments (about 9,300 studies with one to three contrasts each) and about 500,000
foci (a negative-binomial number per experiment, mean 36), MNI, integer millimetre
coordinates drawn inside the 2 mm MNI152 brain mask (half uniformly, half from 60 Gaussian
"hot spots" of 8 mm SD, so that the base rate is uneven as in a real database), sample sizes
8-60. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic_foci(
    n_experiments: int = 14_000, seed: int = 2025, mean_foci: float = 36.0
) -> pd.DataFrame:
    from csale_app.io.templates import load_brain_mask

    rng = np.random.default_rng(seed)
    img = load_brain_mask()
    brain = np.asanyarray(img.dataobj) > 0
    vox = np.argwhere(brain)
    xyz_brain = vox @ img.affine[:3, :3].T + img.affine[:3, 3]
    # studies with 1-3 contrasts until n_experiments contrasts exist
    per_study = rng.choice([1, 2, 3], size=n_experiments, p=[0.6, 0.25, 0.15])
    per_study = per_study[np.cumsum(per_study) <= n_experiments]
    per_study = (
        np.r_[per_study, n_experiments - per_study.sum()]
        if per_study.sum() < n_experiments
        else per_study
    )
    per_study = per_study[per_study > 0]
    study = np.repeat(np.arange(len(per_study)), per_study)
    contrast = np.concatenate([np.arange(1, k + 1) for k in per_study])
    # negative binomial (mean ``mean_foci``, dispersion 3), at least one focus
    n_foci = np.maximum(1, rng.negative_binomial(3, 3 / (3 + mean_foci), size=n_experiments))
    total = int(n_foci.sum())
    hot = xyz_brain[rng.integers(0, len(xyz_brain), 60)]
    uniform = xyz_brain[rng.integers(0, len(xyz_brain), total)]
    spots = hot[rng.integers(0, len(hot), total)] + rng.normal(0, 8, (total, 3))
    use_spot = rng.random(total) < 0.5
    xyz = np.where(use_spot[:, None], spots, uniform)
    xyz = np.round(xyz).astype(np.int64)
    size = rng.integers(8, 61, n_experiments)
    exp = np.repeat(np.arange(n_experiments), n_foci)
    frame = (
        pd.DataFrame(
            {
                "study_id": [f"s{study[e]:05d}" for e in range(n_experiments)],
                "contrast_id": [f"c{contrast[e]}" for e in range(n_experiments)],
            }
        )
        .iloc[exp]
        .reset_index(drop=True)
    )
    frame["x"], frame["y"], frame["z"] = xyz.T
    frame["space"] = "MNI"
    frame["sample_size"] = size[exp]
    return frame


def write_database(path: Path, n_experiments: int = 14_000, seed: int = 2025) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_foci(n_experiments, seed).to_csv(path, sep="\t", index=False)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--experiments", type=int, default=14_000)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args(argv)
    write_database(args.out, args.experiments, args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
