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

        gm = resample_to_img(load_mni152_gm_template(resolution=2), img,
                             interpolation="continuous", force_resample=True,
                             copy_header=True)
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
    return {"brain_mask": base / "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",
            "t1w": base / "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz"}
