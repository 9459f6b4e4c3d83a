"""Run settings: one immutable record built from the command line, passed everywhere."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

DEFAULT_SEED = 20260101


@dataclass(frozen=True)
class Settings:
    analyses: tuple[str, ...] = ("ale", "csale", "macm")
    studyset_labels: tuple[str, ...] = ()
    roi: str | None = None
    roi_coords: tuple[tuple[float, float, float], ...] = ()
    roi_radius: float = 10.0
    roi_dilation_mm: float = 6.0
    database: str | None = None
    n_iters: int = 10000
    voxel_thresh: float = 0.001
    cluster_alpha: float = 0.05
    min_cluster_size: int = 50
    merge_contrasts: bool = True
    min_experiments: int = 15
    kernel_fwhm: float | None = None
    brain_mask: str = "brain"
    device: str = "auto"
    gpu_id: int | None = None
    nprocs: int = 1
    mem_gb: float | None = None
    batch_size: str = "auto"
    random_seed: int = DEFAULT_SEED
    work_dir: str | None = None
    overwrite: bool = False
    verbose: int = 0
    quiet: bool = False
    csale_null: str = "probabilistic"
    subsamples: int = 0
    subsample_fraction: float = 0.8
    macm_seed: str | None = None
    macm_coverage: float | None = None
    chunk_size: int = 250  # permutations per checkpoint (and between stop checks)
    extra: dict = field(default_factory=dict, compare=False)

    # Settings that change results (not nprocs, device, batch size, verbosity, paths).
    RESULT_KEYS = (
        "analyses", "roi", "roi_coords", "roi_radius", "roi_dilation_mm", "database",
        "n_iters", "voxel_thresh", "cluster_alpha", "min_cluster_size", "merge_contrasts",
        "min_experiments", "kernel_fwhm", "brain_mask", "random_seed", "csale_null",
        "subsamples", "subsample_fraction", "macm_seed", "macm_coverage",
    )

    def result_params(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in self.RESULT_KEYS}

    def digest(self, *parts: str) -> str:
        payload = json.dumps([self.result_params(), *parts], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
