"""Results of an analysis held in memory: maps over a grid, tables, sidecars.

:class:`AnalysisOutput` is what a stage computes (one analysis of one studyset, or one MACM
seed); :mod:`csale_app.outputs.studyset_writer` is the only way it reaches the disk, used by
the CLI and by :meth:`MetaResult.to_bids` alike, so the two cannot disagree.
:class:`MetaResult` is what the public estimators (:mod:`csale_app.api`) return; this module
holds data only (the writer and the report are given to it as functions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .kernels.plan import Grid
from . import names
from .records import StudysetSummary


@dataclass(frozen=True)
class AnalysisOutput:
    meta: str  # "ale", "csale" or "seed" (a MACM seed: its mask and selected experiments)
    macm: str | None  # the MACM seed's name, None for the studyset's own analyses
    grid: Grid
    affine: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # "stat-..." -> mask values
    sidecar: dict = field(default_factory=dict)  # common to every map of the analysis
    map_sidecars: dict[str, dict] = field(default_factory=dict)  # per-map additions
    tables: dict[str, tuple[pd.DataFrame, dict | None]] = field(default_factory=dict)
    masks: dict[str, tuple[np.ndarray, dict]] = field(default_factory=dict)  # file -> vol
    summary: dict = field(default_factory=dict)
    raw: object | None = None  # C-SALE: stages.SignificantClusters (MACM seeds); else None

    def image(self, name: str) -> nib.Nifti1Image:
        values = self.maps[names.map_name(name)]
        vol = np.zeros(self.grid.shape, dtype=np.float32)
        vol[self.grid.mask] = np.asarray(values, dtype=np.float32)
        img = nib.Nifti1Image(vol, self.affine)
        img.header.set_xyzt_units("mm")
        return img


class MetaResult:
    """What :meth:`csale_app.api.ALE.fit` (and CSALE, MACM) return.

    ``get_map(name)`` gives a nibabel image (our BIDS names, e.g. ``"z_desc-thresholded"``,
    or NiMARE's, e.g. ``"z_level-voxel_corr-FWE_method-montecarlo"``); ``tables`` holds the
    cluster, peak and contribution tables; ``to_bids(out_dir)`` writes exactly what the CLI
    writes for the studyset, and ``report(out_dir)`` the HTML report of that folder.
    """

    def __init__(
        self,
        label: str,
        outputs: list[AnalysisOutput],
        warnings: list[str],
        *,
        write,
        report,
        source: str = "",
        summary: StudysetSummary | None = None,
    ):
        """``write(out_dir, overwrite) -> Path`` and ``report(out_dir) -> Path`` do the
        disk work (:mod:`csale_app.api` passes the writer and the report builder)."""
        self.label = label
        self.outputs = outputs
        self.warnings = list(warnings)
        self.source = source  # what the studyset came from (a path or a description)
        self.summary = summary  # records.StudysetSummary: counts, what ran, runtime
        self._write = write
        self._report = report

    def _pick(self, meta: str | None, seed: str | None) -> AnalysisOutput:
        found = [
            o
            for o in self.outputs
            if o.maps and o.macm == seed and (meta is None or o.meta == meta)
        ]
        if not found:
            have = sorted({(o.meta, o.macm) for o in self.outputs if o.maps}, key=str)
            raise KeyError(f"no {meta or 'analysis'} result for seed {seed!r} (have {have})")
        return found[0]

    @property
    def seeds(self) -> list[str]:
        return sorted({o.macm for o in self.outputs if o.macm})

    def maps(self, meta: str | None = None, seed: str | None = None) -> list[str]:
        return list(self._pick(meta, seed).maps)

    def get_map(
        self, name: str, meta: str | None = None, seed: str | None = None
    ) -> nib.Nifti1Image:
        """The map ``name`` as a nibabel image on the 2 mm MNI template.

        ``meta`` ("ale", "csale" or "mkdachi2") picks the analysis where a result holds
        several (MACM);
        ``seed`` picks a MACM seed (default: the first)."""
        if seed is None and self.seeds and not any(o.macm is None and o.maps for o in self.outputs):
            seed = self.seeds[0]
        o = self._pick(meta, seed)
        key = names.map_name(name)
        if key not in o.maps:
            raise KeyError(f"no map {name!r}; maps: {', '.join(o.maps)}")
        return o.image(key)

    def get_table(
        self, kind: str, meta: str | None = None, seed: str | None = None
    ) -> pd.DataFrame:
        """``clusters``, ``peaks``, ``contributions``, ``lobules`` (cerebellar results
        only: significant voxels per SUIT lobule), ``null_values`` or (MACM)
        ``experiments`` as a DataFrame."""
        if kind == "experiments":
            for o in self.outputs:
                if o.meta == "seed" and (seed is None or o.macm == seed):
                    return o.tables[names.MACM_EXPERIMENTS][0].copy()
            raise KeyError("no MACM experiments table")
        if seed is None and self.seeds and not any(o.macm is None and o.maps for o in self.outputs):
            seed = self.seeds[0]
        o = self._pick(meta, seed)
        part = names.analysis_table(o.meta, names.NULL_VALUES if kind == "null_values" else kind)
        return o.tables[part][0].copy()

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for o in self.outputs:
            for part, (df, _) in o.tables.items():
                out[names.table_filename(self.label, part, o.macm)] = df
        return out

    def to_bids(self, out_dir, overwrite: bool = False) -> Path:
        """Write the BIDS derivatives (the same files as the CLI) into ``out_dir``."""
        return self._write(Path(out_dir), overwrite)

    def report(self, out_dir) -> Path:
        """Write ``out_dir/report.html`` (after :meth:`to_bids` into the same folder)."""
        out_dir = Path(out_dir)
        if not (out_dir / f"studyset-{self.label}").is_dir():
            self.to_bids(out_dir)
        return self._report(out_dir)
