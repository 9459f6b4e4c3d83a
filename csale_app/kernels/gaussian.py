"""The ALE Gaussian kernel, built exactly as NiMARE 0.22 builds it.

Eickhoff et al. (2009): the kernel FWHM combines between-template (5.7 mm) and
between-subject (11.6 mm / sqrt(N)) uncertainty. NiMARE filters a unit impulse in a 31^3
box with ``scipy.ndimage.gaussian_filter`` and crops values below machine epsilon; the
kernel values are then stored as float32. We do the same so the MA maps agree bit for bit.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

KERNEL_BOX = 31  # NiMARE's box; the cropped kernel is never larger than this
KERNEL_HALF = KERNEL_BOX // 2


def fwhm_from_sample_size(sample_size: float) -> float:
    """FWHM in mm of the ALE kernel for an experiment with ``sample_size`` subjects."""
    uncertain_templates = 5.7 / (2.0 * np.sqrt(2.0 / np.pi)) * np.sqrt(8.0 * np.log(2.0))
    uncertain_subjects = (11.6 / (2 * np.sqrt(2 / np.pi)) * np.sqrt(8 * np.log(2))) / np.sqrt(
        sample_size
    )
    return float(np.sqrt(uncertain_subjects**2 + uncertain_templates**2))


@functools.lru_cache(maxsize=512)
def ale_kernel(fwhm_mm: float, voxel_volume_mm3: float = 8.0) -> np.ndarray:
    """Dense cropped kernel (cubic, odd side, centre = peak), float64 as NiMARE computes it."""
    fwhm_vox = fwhm_mm / np.sqrt(voxel_volume_mm3)
    sigma_vox = fwhm_vox * np.sqrt(2.0) / (np.sqrt(2.0 * np.log(2.0)) * 2.0)
    data = np.zeros((KERNEL_BOX,) * 3)
    data[KERNEL_HALF, KERNEL_HALF, KERNEL_HALF] = 1.0
    kernel = ndimage.gaussian_filter(data, sigma_vox, mode="constant")
    nz = np.where(kernel > np.spacing(1))[0]
    mn, mx = int(nz.min()), int(nz.max())
    kernel = kernel[mn : mx + 1, mn : mx + 1, mn : mx + 1]
    kernel.setflags(write=False)
    return kernel


def kernel_support(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse support of a dense kernel: (offsets (n, 3) int32 from the centre, values float32).

    Mirrors ``nimare.meta.utils._kernel_to_sparse_support`` (centre = floor(shape / 2)).
    """
    nonzero = np.array(np.where(kernel > 0), dtype=np.int32)
    centre = np.floor(np.array(kernel.shape) / 2.0).astype(np.int32)[:, None]
    offsets = (nonzero - centre).T.astype(np.int32)
    values = kernel[tuple(nonzero)].astype(np.float32)
    return offsets, values


def experiment_fwhm(sample_sizes: np.ndarray, kernel_fwhm: float | None) -> np.ndarray:
    """Per-experiment FWHM: the fixed ``kernel_fwhm`` if given, else from sample sizes."""
    if kernel_fwhm is not None:
        return np.full(len(sample_sizes), float(kernel_fwhm))
    return np.array([fwhm_from_sample_size(float(n)) for n in sample_sizes])
