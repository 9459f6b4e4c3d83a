"""The MNI152NLin6Asym 2 mm template and brain masks (shipped by NiMARE, offline).

The files are read from NiMARE's installed ``resources`` folder, found with
``importlib.util.find_spec`` so that NiMARE itself is never imported (importing it costs
~2.4 s and configures the root logger); the images are what ``nimare.utils.get_template``
returns (same files, bool mask, float32 T1).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np

SPACE = "MNI152NLin6Asym"


@functools.lru_cache(maxsize=4)
def load_brain_mask(kind: str = "brain") -> nib.Nifti1Image:
    """Brain mask on NiMARE's 2 mm template; ``gm`` = brain & nilearn's GM prior > 0.1."""
    img = nib.load(template_files()["brain_mask"])
    data = np.asanyarray(img.dataobj) > 0
    if kind == "gm":
        from nilearn.datasets import load_mni152_gm_template
        from nilearn.image import resample_to_img

        gm = resample_to_img(
            load_mni152_gm_template(resolution=2),
            img,
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
        data &= np.asanyarray(gm.dataobj) > 0.1
    out = nib.Nifti1Image(data.astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm")
    return out


@functools.lru_cache(maxsize=1)
def load_t1() -> nib.Nifti1Image:
    img = nib.load(template_files()["t1w"])
    return nib.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine, img.header)


@functools.lru_cache(maxsize=1)
def nimare_resource_dir() -> Path:
    """NiMARE's ``resources`` folder (templates, atlases, datasets), without importing it."""
    spec = importlib.util.find_spec("nimare")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'nimare' is not installed (it ships the templates)")
    return Path(list(spec.submodule_search_locations)[0]) / "resources"


def template_files() -> dict[str, Path]:
    base = nimare_resource_dir() / "templates"
    return {
        "brain_mask": base / "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",
        "t1w": base / "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz",
    }


def resample_nearest(
    data: np.ndarray,
    affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
) -> np.ndarray:
    """A 3-D volume resampled (nearest neighbour, 0 outside) onto another grid: the same
    arithmetic and SciPy call as nilearn 0.12's ``resample_to_img(img, target,
    interpolation="nearest", force_resample=True)``, so the same values (a test compares
    them on the atlases), without importing ``nilearn.image``, which costs about a second
    (it imports ``scipy.stats`` and scikit-learn) on the path of every run's tables."""
    from scipy import linalg
    from scipy.ndimage import affine_transform

    data = np.asarray(data)
    affine = np.asarray(affine, dtype=np.float64)
    target_affine = np.asarray(target_affine, dtype=np.float64)
    target_shape = tuple(int(n) for n in target_shape)
    if data.ndim != 3 or (data.dtype.kind == "f" and not np.isfinite(data).all()):
        # nilearn's own handling (NaN filled in from neighbours, 4-D volume by volume)
        from nilearn.image import resample_to_img

        out = resample_to_img(
            nib.Nifti1Image(data, affine),
            nib.Nifti1Image(np.zeros(target_shape, np.int8), target_affine),
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
        return np.asanyarray(out.dataobj)
    if data.shape[:3] == target_shape and np.allclose(target_affine, affine):
        return data.copy()  # nilearn: no resampling needed
    transform = (
        np.eye(4) if np.all(target_affine == affine) else np.dot(linalg.inv(affine), target_affine)
    )
    matrix, offset = transform[:3, :3], transform[:3, 3]
    if np.all(np.diag(np.diag(matrix)) == matrix):  # a zoom/shift: scipy's faster path
        matrix = np.diag(matrix)
    out = np.zeros(target_shape, dtype=data.dtype.newbyteorder("="), order="F")
    affine_transform(
        data, matrix, offset=offset, output_shape=target_shape, output=out, cval=0, order=0
    )
    return out
