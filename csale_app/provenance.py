"""Provenance: which software, in which container, computed the results.

A leaf module (it imports nothing of the package but the version), read by the sidecars
(:func:`csale_app.context.common_sidecar`) and the dataset description
(:mod:`csale_app.outputs.dataset`). Which Dask worker computed which permutation chunk is
recorded by :func:`csale_app.stats.montecarlo.computed_by`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._version import __version__


def software_versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers (sidecars' ``Software``)."""
    import nibabel as nib
    import nilearn
    import numba
    import numpy as np
    import pandas as pd
    import scipy

    return {
        "csale_app": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "nibabel": nib.__version__,
        "nilearn": nilearn.__version__,
        "pandas": pd.__version__,
    }


def container_provenance(environ=None, root: Path = Path("/")) -> dict | None:
    """GeneratedBy.Container: the runtime that runs this process and the image, or None.

    Apptainer/Singularity set APPTAINER_CONTAINER / SINGULARITY_CONTAINER (the image file);
    Podman sets ``container=podman`` and writes /run/.containerenv (not with --read-only; the
    image name in it only in some modes); Docker makes /.dockerenv. The image's tag comes
    from CSALE_CONTAINER (set by the Dockerfile and Singularity.def), else from Podman's file.
    """
    env = os.environ if environ is None else environ
    tag = env.get("CSALE_CONTAINER") or None
    for var, kind in (
        ("APPTAINER_CONTAINER", "apptainer"),
        ("SINGULARITY_CONTAINER", "singularity"),
    ):
        if env.get(var):
            out = {"Type": kind, "Tag": tag, "URI": "file://" + env[var]}
            return {k: v for k, v in out.items() if v}
    podman = root / "run" / ".containerenv"
    if env.get("container") == "podman" or podman.is_file():
        try:
            fields = dict(
                line.split("=", 1) for line in podman.read_text().splitlines() if "=" in line
            )
        except OSError:
            fields = {}
        image = fields.get("image", "").strip('"')
        return {k: v for k, v in {"Type": "podman", "Tag": tag or image}.items() if v}
    if (root / ".dockerenv").exists():
        return {k: v for k, v in {"Type": "docker", "Tag": tag}.items() if v}
    return {"Type": "unknown", "Tag": tag} if tag else None
