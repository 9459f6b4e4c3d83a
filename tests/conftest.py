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
    return build_experiments(
        read_studyset(pain_json), img.affine, mask.shape, merge_contrasts=False
    )


@pytest.fixture(scope="session")
def demo_input(tmp_path_factory) -> Path:
    """The demo's n-back and flanker tables (NiMARE's studyset), shared read-only."""
    from csale_app.io.demo_data import write_demo_input

    d = tmp_path_factory.mktemp("demo") / "in"
    write_demo_input(d)
    return d


@pytest.fixture
def small_chunks(monkeypatch):
    """Runs with chunks of tests.dask_procs.CHUNK permutations (several chunks, several
    levels of the C-SALE tree reduction, on tiny nulls)."""
    from dataclasses import replace

    from csale_app import pipeline
    from tests.dask_procs import CHUNK

    init = pipeline.Pipeline.__init__

    def patched(self, settings, *args, **kwargs):
        init(self, replace(settings, chunk_size=CHUNK), *args, **kwargs)

    monkeypatch.setattr(pipeline.Pipeline, "__init__", patched)


@pytest.fixture(scope="session")
def reference(demo_input, tmp_path_factory):
    """The single-process run (--nprocs 1, tests.dask_procs.FAST, small chunks) that every
    cluster run must equal: digest of its maps and tables (tests.dask_procs.results_digest)."""
    from dataclasses import replace

    from csale_app import pipeline
    from csale_app.cli.run import main
    from tests.dask_procs import CHUNK, FAST, results_digest

    out = tmp_path_factory.mktemp("ref") / "out"
    init = pipeline.Pipeline.__init__
    pipeline.Pipeline.__init__ = lambda self, s, *a, **k: init(
        self, replace(s, chunk_size=CHUNK), *a, **k
    )
    try:
        assert main([str(demo_input), str(out), "group", *FAST]) == 0
    finally:
        pipeline.Pipeline.__init__ = init
    digest = results_digest(out)
    assert any("meta-csale" in k for k in digest) and any("macm-" in k for k in digest)
    assert any("meta-ale" in k for k in digest)
    assert any("desc-subsamplesextent" in k for k in digest)
    return digest
