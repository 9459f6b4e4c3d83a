"""The MNI152NLin6Asym 2 mm template and brain masks (shipped by NiMARE, offline)."""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np

SPACE = "MNI152NLin6Asym"
RES = "2"


@functools.lru_cache(maxsize=4)
def load_brain_mask(kind: str = "brain") -> nib.Nifti1Image:
    """Brain mask on NiMARE's 2 mm template; ``gm`` = brain & nilearn's GM prior > 0.1."""
    from nimare.utils import get_template

    img = get_template("mni152_2mm", mask="brain")
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
    from nimare.utils import get_template

    return get_template("mni152_2mm", mask=None)


def template_files() -> dict[str, Path]:
    from nimare.utils import get_resource_path

    base = Path(get_resource_path()) / "templates"
    return {"brain_mask": base / "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",
            "t1w": base / "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz"}
