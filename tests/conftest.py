import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NUMBA_NUM_THREADS", "2")


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)


def nimare_resource(name: str) -> Path:
    from nimare.utils import get_resource_path

    return Path(get_resource_path()) / name


@pytest.fixture(scope="session")
def pain_json() -> Path:
    return nimare_resource("nidm_pain_dset.json")


@pytest.fixture
def pain_input(tmp_path, pain_json) -> Path:
    """INPUT_DIR holding NiMARE's pain dataset as pain.json (one per test)."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(pain_json, d / "pain.json")
    return d


@pytest.fixture(scope="session")
def brain():
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    return img, np.asanyarray(img.dataobj) > 0


@pytest.fixture(scope="session")
def pain_experiments(pain_json, brain):
    from csale_app.io.experiments import build_experiments
    from csale_app.io.readers import read_studyset

    img, mask = brain
    return build_experiments(read_studyset(pain_json), img.affine, mask.shape,
                             merge_contrasts=False)


@pytest.fixture(scope="session")
def demo_input(tmp_path_factory) -> Path:
    """The demo's n-back and flanker tables (NiMARE's studyset), shared read-only."""
    from csale_app.io.demo_data import write_demo_input

    d = tmp_path_factory.mktemp("demo") / "in"
    write_demo_input(d)
    return d
