"""Command-line parser (BIDS-App conventions). ``build_parser`` is separate from ``main``."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from .. import __version__
from ..settings import DEFAULT_SEED

ANALYSES = ("ale", "csale", "macm")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _coords(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        xyz = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in mm, got {text!r}") from None
    if len(xyz) != 3:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in mm, got {text!r}")
    return xyz  # type: ignore[return-value]


def _batch_size(text: str) -> str:
    if text == "auto":
        return text
    return str(_positive_int(text))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="csale-app",
        description="ALE, C-SALE and MACM coordinate-based meta-analysis (BIDS App).",
    )
    # "-40,20,30" (an --roi-coords value) is a number, not an option; no option starts
    # with a digit, so any "-<digit>" token can be treated as a value.
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    p.add_argument("input_dir", type=Path, help="folder of coordinate tables (one studyset each)")
    p.add_argument("output_dir", type=Path, help="folder for the BIDS derivatives")
    p.add_argument("analysis_level", choices=["group"], help="'group': every studyset found")
    p.add_argument("--version", action="version", version=f"csale-app {__version__}")

    g = p.add_argument_group("selection")
    g.add_argument("--studyset-label", nargs="+", default=[], metavar="L",
                   help="run only these studysets (labels = BIDS-safe file stems)")
    g.add_argument("--analyses", nargs="+", choices=ANALYSES, default=list(ANALYSES),
                   help="analyses to run [all three]")
    g.add_argument("--database", type=Path, default=None,
                   help="file or folder of tables used as the reference database "
                        "[INPUT_DIR/database/, else all tables in INPUT_DIR]")
    g.add_argument("--merge-contrasts", action=argparse.BooleanOptionalAction, default=True,
                   help="merge contrasts of one study into one experiment [merge]")
    g.add_argument("--min-experiments", type=_positive_int, default=15,
                   help="skip studysets/MACM seeds with fewer experiments [15]")

    g = p.add_argument_group("region of interest")
    g.add_argument("--roi", default=None, help="NIfTI mask or a built-in name (cerebellum)")
    g.add_argument("--roi-coords", type=_coords, nargs="+", default=[], metavar="X,Y,Z",
                   help="ROI as spheres around MNI coordinates")
    g.add_argument("--roi-radius", type=_positive_float, default=10.0, metavar="MM",
                   help="sphere radius for --roi-coords [10]")
    g.add_argument("--roi-dilation-mm", type=_nonneg_float, default=6.0, metavar="MM",
                   help="dilation of the ROI for the analysis mask [6]")
    g.add_argument("--brain-mask", choices=["brain", "gm"], default="brain",
                   help="whole-brain mask [brain]")

    g = p.add_argument_group("statistics")
    g.add_argument("--n-iters", type=_positive_int, default=10000,
                   help="permutations of the null [10000]")
    g.add_argument("--voxel-thresh", type=_probability, default=0.001,
                   help="cluster-forming p [0.001]")
    g.add_argument("--cluster-alpha", type=_probability, default=0.05,
                   help="cluster-level FWE alpha for thresholded maps [0.05]")
    g.add_argument("--min-cluster-size", type=_nonneg_int, default=50, metavar="K",
                   help="extent threshold in voxels (C-SALE cluster-extent maps) [50]")
    g.add_argument("--kernel-fwhm", type=_positive_float, default=None, metavar="MM",
                   help="fixed kernel FWHM instead of sample-size kernels")
    g.add_argument("--random-seed", type=_nonneg_int, default=DEFAULT_SEED,
                   help=f"seed of the permutation nulls [{DEFAULT_SEED}]")

    g = p.add_argument_group("C-SALE")
    g.add_argument("--csale-null", choices=["probabilistic", "deterministic"],
                   default="probabilistic", help="null foci from the base-rate map or the "
                   "reference foci [probabilistic]")
    g.add_argument("--subsamples", type=_nonneg_int, default=0, metavar="N",
                   help="repeat C-SALE on N random subsamples [0]")
    g.add_argument("--subsample-fraction", type=_probability, default=0.8, metavar="F",
                   help="fraction of experiments per subsample [0.8]")

    g = p.add_argument_group("MACM")
    g.add_argument("--macm-seed", choices=["roi", "clusters", "each-cluster"], default=None,
                   help="seed of the MACM [clusters when C-SALE ran, else roi]")
    g.add_argument("--macm-coverage", type=_probability, default=None, metavar="F",
                   help="select experiments whose foci spheres cover >= F of the seed")

    g = p.add_argument_group("compute")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="compute device [auto]")
    g.add_argument("--gpu-id", type=_nonneg_int, default=None, help="CUDA device index")
    g.add_argument("--nprocs", "--n-cpus", "--nthreads", dest="nprocs", type=_positive_int,
                   default=os.cpu_count() or 1, help="CPU threads [all cores]")
    g.add_argument("--mem", dest="mem_gb", type=_positive_float, default=None, metavar="GB",
                   help="memory limit in GB (caps GPU batch size)")
    g.add_argument("--batch-size", type=_batch_size, default="auto",
                   help="permutations per GPU batch: auto or N [auto]")
    g.add_argument("-w", "--work-dir", type=Path, default=None,
                   help="folder for checkpoints (resume a killed run) [OUTPUT_DIR/.csale_work]")

    g = p.add_argument_group("output")
    g.add_argument("--overwrite", action="store_true",
                   help="replace results of other settings in OUTPUT_DIR")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    return p
