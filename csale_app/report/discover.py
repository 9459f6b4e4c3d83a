"""Find what the pipeline wrote in OUTPUT_DIR (glob patterns; absent families are skipped).

Layout (SPEC section 5)::

    studyset-<S>/studyset-<S>_desc-experiments_table.tsv, _desc-input_foci.tsv
    studyset-<S>/studyset-<S>_roi-<R>_mask.nii.gz
    studyset-<S>/studyset-<S>_space-..._meta-<m>_<stat...>_statmap.nii.gz (+ .json)
    studyset-<S>/studyset-<S>_[space-..._]meta-<m>_{clusters,peaks,contributions}.tsv
    studyset-<S>/studyset-<S>_[space-..._]meta-<m>_desc-null_values.tsv
    studyset-<S>/macm-<M>/studyset-<S>_macm-<M>_... (same families)
    studyset-<S>/macm-<M>/studyset-<S>_macm-<M>_experiments.tsv, ..._mask.nii.gz

Every name comes from :mod:`csale_app.names`, as the writer's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import names

META_ORDER = {"ale": 0, "csale": 1, "mkdachi2": 2}
_MAP_RE = names.MAP_PATTERN
_TABLE_RE = names.TABLE_PATTERN
#: Short names of the tables an analysis holds (``Analysis.tables``).
TABLE_KINDS = {
    names.NULL_VALUES: "null",
    names.SUBSAMPLE_TABLE: "subsamples",
    names.EXTENT_CLUSTERS: "extent_clusters",
}


@dataclass
class Analysis:
    meta: str  # "ale", "csale", ...
    prefix: str  # "studyset-S" or "studyset-S_macm-M"
    maps: dict[str, Path] = field(default_factory=dict)  # names.THRESHOLDED, ... -> path
    tables: dict[str, Path] = field(default_factory=dict)  # clusters/.../null/subsamples

    def map(self, part: str) -> Path | None:
        return self.maps.get(part)

    def map_sidecar(self, part: str) -> dict:
        """The JSON sidecar of the map ``part``, or {}."""
        path = self.maps.get(part)
        if path is None:
            return {}
        try:
            data = json.loads(
                path.with_name(path.name[: -len(".nii.gz")] + ".json").read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sidecar(self) -> dict:
        """The JSON sidecar of the thresholded map (else of any map), or {}."""
        paths = [self.maps.get(names.THRESHOLDED)] + sorted(self.maps.values())
        for p in paths:
            if p is None:
                continue
            side = p.with_name(p.name[: -len(".nii.gz")] + ".json")
            try:
                data = json.loads(side.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    return data
            except (OSError, ValueError):
                continue
        return {}


@dataclass
class Macm:
    name: str
    folder: Path
    seed_mask: Path | None
    experiments: Path | None
    analyses: list[Analysis]


@dataclass
class Studyset:
    label: str
    folder: Path
    experiments_table: Path | None
    roi_masks: list[Path]
    analyses: list[Analysis]
    macms: list[Macm]
    input_foci: Path | None = None


def _one(folder: Path, name: str) -> Path | None:
    path = folder / name
    return path if path.is_file() else None


def find_analyses(folder: Path, prefix: str) -> list[Analysis]:
    found: dict[str, Analysis] = {}
    for p in sorted(folder.glob(f"{prefix}_*_statmap.nii.gz")):
        m = _MAP_RE.search(p.name)
        if m:
            found.setdefault(m["meta"], Analysis(m["meta"], prefix)).maps[m["part"]] = p
    for p in sorted(folder.glob(f"{prefix}_*.tsv")):
        m = _TABLE_RE.search(p.name)
        if m:
            kind = TABLE_KINDS.get(m["kind"], m["kind"])
            found.setdefault(m["meta"], Analysis(m["meta"], prefix)).tables[kind] = p
    return sorted(found.values(), key=lambda a: (META_ORDER.get(a.meta, 9), a.meta))


def find_results(output_dir: Path) -> list[Studyset]:
    """The results of every studyset in OUTPUT_DIR (``studyset-<S>/`` folders)."""
    out = []
    for folder in sorted(Path(output_dir).glob("studyset-*")):
        if not folder.is_dir():
            continue
        label = folder.name[len("studyset-") :]
        prefix = names.prefix(label)
        macms = []
        for mf in sorted(folder.glob("macm-*")):
            if not mf.is_dir():
                continue
            name = mf.name[len("macm-") :]
            macms.append(
                Macm(
                    name,
                    mf,
                    _one(mf, names.seed_mask_filename(label, name)),
                    _one(mf, names.table_filename(label, names.MACM_EXPERIMENTS, name)),
                    find_analyses(mf, names.prefix(label, name)),
                )
            )
        out.append(
            Studyset(
                label=label,
                folder=folder,
                experiments_table=_one(
                    folder, names.table_filename(label, names.EXPERIMENTS_TABLE)
                ),
                roi_masks=sorted(folder.glob(names.roi_mask_filename(label, "*"))),
                analyses=find_analyses(folder, prefix),
                macms=macms,
                input_foci=_one(folder, names.table_filename(label, names.INPUT_FOCI)),
            )
        )
    return out
