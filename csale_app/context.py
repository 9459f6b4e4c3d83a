"""What a run and one studyset's job need, as frozen records passed explicitly to stages.

The pipeline builds one :class:`RunContext` (masks, grids, the reference database, the
compute backend, the work folder) and one :class:`StudysetJob` per studyset; stages take
both and return :class:`csale_app.results.AnalysisOutput`. No disk, no maths here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import interrupt
from .io.experiments import Experiments
from .io.roi import ROI
from .io.templates import SPACE
from .kernels.plan import Grid
from .settings import Settings

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Database:
    """The reference database of a run (the same for every studyset of the run)."""

    experiments: Experiments
    files: tuple[str, ...]
    source: str  # "the database given (<path>)", "INPUT_DIR/database/" or "every studyset
    # in INPUT_DIR"
    digest: str  # of the bytes of every file
    file_digests: tuple[str, ...] = ()  # one per file

    def is_only(self, source_digest: str) -> bool:
        """Whether the database is exactly the studyset whose file digest is given."""
        return set(self.file_digests) == {source_digest}

    def describe(self) -> dict:
        out = {
            "source": self.source,
            "files": [Path(f).name for f in self.files],
            "paths": list(self.files),
            "n_experiments": self.experiments.n_experiments,
            "n_foci": self.experiments.n_foci,
        }
        n_default = defaulted_count(self.experiments)
        if n_default is not None:
            out["n_experiments_default_sample_size"] = n_default
        return out


def defaulted_count(exps: Experiments) -> int | None:
    """How many of the experiments got --default-sample-size (None: option not set)."""
    from .io.experiments import DEFAULTED

    table = exps.table
    if "sample_size_source" not in getattr(table, "columns", ()):
        return None
    used = table["experiment_id"].isin(exps.ids) & table["sample_size_source"].eq(DEFAULTED)
    return int(used.sum())


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    affine: np.ndarray
    grid: Grid  # analysis mask: the dilated ROI, or the brain
    brain_grid: Grid  # whole brain (MACM)
    roi: ROI | None
    database: Database | None
    backend: object
    work_root: Path | None  # checkpoints (None: a Python API fit without work_dir)
    inputs_digest: str  # brain mask and ROI content
    executor: object | None = None  # csale_app.distributed executor (--dask-scheduler)

    @property
    def report_mask(self) -> np.ndarray | None:
        """Per analysis-mask voxel: inside the ROI (None without an ROI)."""
        return None if self.roi is None else self.roi.mask[self.grid.mask]

    def extent_note(self, macm: bool) -> dict:
        """Sidecar entries saying which voxels each kind of map covers."""
        if macm or self.roi is None:
            return {"MapExtent": "whole brain mask"}
        return {
            "MapExtent": {
                "unthresholded maps": f"analysis mask: ROI '{self.roi.label}' dilated by "
                f"{self.settings.roi_dilation_mm:g} mm within the brain "
                f"mask ({self.grid.n_mask} voxels)",
                "thresholded maps, cluster/peak/contribution tables": (
                    f"ROI '{self.roi.label}' ({self.roi.n_voxels} voxels)"
                ),
            }
        }


@dataclass(frozen=True)
class StudysetJob:
    label: str
    path: object  # the source: a Path, an io.terms.TermStudyset or an in-memory description
    experiments: Experiments
    digest: str  # of everything its results depend on (names checkpoints, decides reuse)
    source_digest: str  # of the studyset file's bytes


class Progress:
    """Permutation progress on stderr (tqdm), silenced by --quiet; rate and ETA in the log."""

    def __init__(self, total: int, desc: str, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, desc=desc, unit="it", disable=quiet, leave=False, dynamic_ncols=True
        )
        self.t0 = time.perf_counter()
        self.done = 0
        self.total = total
        self.desc = desc

    def __call__(self, n: int) -> None:
        interrupt.checkpoint()  # a SIGTERM stops between chunks, never inside compiled code
        self.done += n
        self.bar.update(n)
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        LOG.debug(
            "%s: %d/%d permutations, %.1f it/s, ETA %.0f s",
            self.desc,
            self.done,
            self.total,
            rate,
            (self.total - self.done) / max(rate, 1e-9),
        )

    def close(self) -> float:
        self.bar.close()
        elapsed = time.perf_counter() - self.t0
        LOG.info(
            "%s: %d permutations in %.1f s (%.1f it/s)",
            self.desc,
            self.done,
            elapsed,
            self.done / max(elapsed, 1e-9),
        )
        return elapsed


def common_sidecar(
    ctx: RunContext, exps: Experiments, source, method: str, extra: dict | None = None
) -> dict:
    from .provenance import software_versions

    settings = ctx.settings
    side = {
        "Method": method,
        "Software": software_versions(),
        "Space": SPACE,
        "Parameters": settings.result_params(),
        "RandomSeed": settings.random_seed,
        "Device": ctx.backend.describe(),
        "NumberOfExperiments": exps.n_experiments,
        "NumberOfFoci": exps.n_foci,
        "NumberOfSubjects": (
            int(np.nansum(exps.sample_size)) if not np.all(np.isnan(exps.sample_size)) else None
        ),
        "Sources": [str(source)],
    }
    if settings.default_sample_size is not None:
        side["DefaultSampleSize"] = {
            "SampleSize": settings.default_sample_size,
            "ExperimentsUsingIt": defaulted_count(exps) or 0,
            "Rule": "experiments without a sample size in their input were given "
            "--default-sample-size (the kernel width follows from it)",
        }
    if extra:
        side.update(extra)
    return side
