"""The scan of one permutation's accumulator, written once for every engine's host side.

One linear walk gives what the FWE null needs of a permutation before labelling clusters:
the accumulator minimum (the max ALE) and the supra-threshold voxels (mask indices, in the
walk's order) with their ALE values. The CPU pass walks its row hull (``to_mask`` =
``Grid.hull_to_mask``, -1 off the mask); the CUDA backend's overflow fallback walks a full
accumulator row (``to_mask`` = the identity). The walk clears ``acc`` as it goes, so the
CPU's buffer is ready for the next permutation without a second pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .shared import compile_shared

_, log_to_ale = compile_shared(njit(cache=True, inline="always"))


@njit(cache=True, inline="always")
def scan_accumulator(acc, to_mask, log_thresh, supra, ale_of):
    """(min_log, n_supra): the minimum of ``acc`` over mask entries and the number of
    entries below ``log_thresh``, whose mask indices and ALE values fill ``supra[:n_supra]``
    and ``ale_of[:n_supra]``; ``acc`` is zeroed."""
    min_log = np.float32(0.0)
    n_supra = 0
    for hx in range(to_mask.shape[0]):
        s = acc[hx]
        acc[hx] = 0.0
        v = to_mask[hx]
        if v < 0:
            continue
        if s < min_log:
            min_log = s
        if s < log_thresh:
            supra[n_supra] = v
            ale_of[n_supra] = log_to_ale(s)
            n_supra += 1
    return min_log, n_supra
