"""Writers of test studysets in the input formats, shared by the reader and round-trip tests.

An experiment is (study, contrast, sample size, space, foci as (x, y, z) tuples).
"""

from __future__ import annotations

import json


def nimare_json(exps) -> str:
    """A NiMARE Dataset JSON of the experiments."""
    data: dict = {}
    for study, contrast, n, space, foci in exps:
        xs, ys, zs = (list(v) for v in zip(*foci))
        data.setdefault(study, {"contrasts": {}})["contrasts"][contrast] = {
            "coords": {"space": space, "x": xs, "y": ys, "z": zs},
            "metadata": {"sample_sizes": [n]},
        }
    return json.dumps(data, indent=2)
