"""BIDS-derivatives writer: maps with JSON sidecars, tables, dataset_description.json.

Only this package (with ``io`` and ``report``) touches the disk. Every file goes through
``atomic.write_atomic``; a studyset's results are assembled in a staging folder and moved
into place in one rename, so a killed run never leaves a half-written file under a final
name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import __version__
from ..errors import OutputError
from ..kernels.plan import Grid
from .atomic import public_mode, write_atomic, write_json, write_text

SPACE_ENT = "space-MNI152NLin6Asym_res-2"
PROVENANCE = ".csale_provenance.json"
#: Staging folders are ``OUTPUT_DIR/.csale_staging-studyset-<S>-XXXX``; they are hidden and
#: deliberately not ``.staging-studyset-*``, so a run started for other studysets of a job
#: array (``--studyset-label``) never removes the staging folder of a sibling run.
STAGING_PREFIX = ".csale_staging-"
STAGING_MARKER = ".csale_staging"


def pybids_config_path() -> Path:
    return Path(str(resources.files("csale_app.outputs") / "pybids_config.json"))


def software_versions() -> dict[str, str]:
    import nilearn
    import numba
    import scipy

    return {"csale_app": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "nibabel": nib.__version__,
            "nilearn": nilearn.__version__, "pandas": pd.__version__}


def write_dataset_description(output_dir: Path) -> None:
    container = os.environ.get("CSALE_CONTAINER")
    generated = {"Name": "csale_app", "Version": __version__,
                 "CodeURL": "https://pypi.org/project/csale-app/"}
    if container:
        generated["Container"] = {"Type": "docker", "Tag": container}
    write_json(output_dir / "dataset_description.json", {
        "Name": "csale_app coordinate-based meta-analysis",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    })
    write_text(output_dir / ".bidsignore", "logs/\nreport.html\n*.bib\n.csale_*\n*_provenance.json\n")
    write_atomic(output_dir / "csale_app_pybids_config.json",
                 lambda p: shutil.copyfile(pybids_config_path(), p))


def write_map(path: Path, values: np.ndarray, grid: Grid, affine: np.ndarray,
              sidecar: dict) -> Path:
    """A map over mask voxels as a float32 NIfTI (zeros outside the mask) + JSON sidecar."""
    vol = np.zeros(grid.shape, dtype=np.float32)
    vol[grid.mask] = np.asarray(values, dtype=np.float32)
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    write_atomic(path, lambda p: nib.save(img, str(p)))
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
    return path


def write_mask(path: Path, mask: np.ndarray, affine: np.ndarray, sidecar: dict) -> Path:
    img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), affine)
    img.header.set_xyzt_units("mm")
    write_atomic(path, lambda p: nib.save(img, str(p)))
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
    return path


def write_table(path: Path, df: pd.DataFrame, sidecar: dict | None = None) -> Path:
    write_atomic(path, lambda p: df.to_csv(p, sep="\t", index=False, na_rep="n/a"))
    if sidecar is not None:
        write_json(path.with_name(path.name.replace(".tsv", ".json")), sidecar)
    return path


class StudysetOutput:
    """Staging folder for one studyset; ``commit`` moves it to OUTPUT_DIR/studyset-<S>."""

    def __init__(self, output_dir: Path, label: str):
        self.final = Path(output_dir) / f"studyset-{label}"
        self.label = label
        remove_stale_staging(output_dir, label)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}studyset-{label}-",
                                             dir=output_dir))
        public_mode(self.staging, directory=True)
        # write_atomic re-creates missing parent folders, so a staging folder removed by
        # another run would silently refill with only the files written after that; the
        # marker tells ``commit`` the folder is the one made here.
        (self.staging / STAGING_MARKER).write_text(f"{os.getpid()}\n")

    def prefix(self, macm: str | None = None) -> str:
        return f"studyset-{self.label}" + (f"_macm-{macm}" if macm else "")

    def folder(self, macm: str | None = None) -> Path:
        d = self.staging / f"macm-{macm}" if macm else self.staging
        d.mkdir(parents=True, exist_ok=True)
        return d

    def map_path(self, meta: str, stat_part: str, macm: str | None = None) -> Path:
        return self.folder(macm) / f"{self.prefix(macm)}_{SPACE_ENT}_meta-{meta}_{stat_part}_statmap.nii.gz"

    def table_path(self, name: str, macm: str | None = None) -> Path:
        return self.folder(macm) / f"{self.prefix(macm)}_{name}.tsv"

    def commit(self, provenance: dict) -> None:
        marker = self.staging / STAGING_MARKER
        if not marker.is_file():
            raise OutputError(f"{self.staging}: the staging folder was removed while this run "
                              "wrote to it (another csale-app run on the same OUTPUT_DIR and "
                              "studyset?); nothing was moved to "
                              f"{self.final.name}; run again")
        write_json(self.staging / PROVENANCE, provenance)
        marker.unlink()
        old = None
        if self.final.exists():
            old = self.final.with_name(f".old-{self.final.name}-{os.getpid()}")
            os.replace(self.final, old)
        os.replace(self.staging, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def remove_stale_staging(output_dir: Path, label: str) -> None:
    """Remove leftovers of killed runs for this studyset only (staging, half-swapped old).

    Labels are alphanumeric, so ``<label>-*`` never matches another studyset's folders.
    """
    output_dir = Path(output_dir)
    for pattern in (f"{STAGING_PREFIX}studyset-{label}-*", f".old-studyset-{label}-*"):
        for stale in output_dir.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)


def read_provenance(studyset_dir: Path) -> dict | None:
    f = Path(studyset_dir) / PROVENANCE
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def prepare_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".csale_write_test_{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{output_dir}: cannot create the output folder ({exc.strerror})") from None
