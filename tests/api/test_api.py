"""The Python API: estimators with the CLI's option names; the same numbers and bytes as the
CLI; NiMARE Dataset input; map names (ours and NiMARE's)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csale_app import ALE, CSALE, MACM
from csale_app.cli.run import main

from tests.trees import tree_digest


@pytest.fixture(scope="module")
def pain_dir(tmp_path_factory, pain_json):
    d = tmp_path_factory.mktemp("api") / "in"
    d.mkdir()
    shutil.copy(pain_json, d / "pain.json")
    return d


@pytest.fixture(scope="module")
def pain_api_and_cli(pain_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("apiout")
    opts = dict(n_iters=60, nprocs=1, min_experiments=5, random_seed=11)
    res = ALE(**opts).fit(pain_dir / "pain.json")
    res.to_bids(out / "api")
    code = main(
        [
            str(pain_dir),
            str(out / "cli"),
            "group",
            "--analyses",
            "ale",
            "--n-iters",
            "60",
            "--nprocs",
            "1",
            "--min-experiments",
            "5",
            "--random-seed",
            "11",
            "--quiet",
        ]
    )
    assert code == 0
    return res, out


def test_api_to_bids_equals_cli_byte_for_byte_on_pain(pain_api_and_cli):
    _, out = pain_api_and_cli
    a, b = tree_digest(out / "api" / "studyset-pain"), tree_digest(out / "cli" / "studyset-pain")
    assert len(a) > 15 and a == b


def test_api_to_bids_is_valid_bids(pain_api_and_cli, pain_dir):
    from tests.bids_check import assert_valid_bids

    _, out = pain_api_and_cli
    assert_valid_bids(out / "api")
    desc = json.loads((out / "api" / "dataset_description.json").read_text())
    assert [s["URL"] for s in desc["SourceDatasets"]] == [
        (pain_dir / "pain.json").resolve().as_uri()
    ]
    assert "studyset-pain/" in (out / "api" / "README.md").read_text()


def test_map_names_ours_and_nimares(pain_api_and_cli):
    res, out = pain_api_and_cli
    cli = out / "cli" / "studyset-pain"
    for ours, nimare in [
        ("stat-ale", "stat"),
        ("stat-z", "z"),
        ("stat-logp_level-voxel_corr-FWE", "logp_level-voxel_corr-FWE_method-montecarlo"),
        (
            "stat-z_level-cluster_corr-FWE_desc-size",
            "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        ),
    ]:
        img = res.get_map(nimare)
        assert isinstance(img, nib.Nifti1Image) and img.shape == (91, 109, 91)
        ref = nib.load(next(cli.glob(f"*_meta-ale_{ours}_statmap.nii.gz")))
        assert np.array_equal(np.asanyarray(img.dataobj), np.asanyarray(ref.dataobj))
        assert np.array_equal(img.affine, ref.affine)
    assert "stat-z_desc-thresholded" in res.maps()
    with pytest.raises(KeyError, match="no map"):
        res.get_map("nonsense")
    clusters = res.get_table("clusters")
    assert list(clusters["size_voxels"]) == sorted(clusters["size_voxels"], reverse=True)
    assert len(res.get_table("null_values")) == 60


def test_nimare_dataset_input_gives_the_same_numbers(pain_api_and_cli, pain_json):
    from nimare.dataset import Dataset

    res, _ = pain_api_and_cli
    dset_res = ALE(n_iters=60, nprocs=1, min_experiments=5, random_seed=11).fit(
        Dataset(str(pain_json)), label="pain"
    )
    for name in ("stat-ale", "stat-z", "stat-z_level-voxel_corr-FWE", "stat-z_desc-thresholded"):
        assert np.array_equal(dset_res.get_map(name).get_fdata(), res.get_map(name).get_fdata())
    a, b = dset_res.get_table("clusters"), res.get_table("clusters")
    assert a.drop(columns="top_contributors", errors="ignore").equals(
        b.drop(columns="top_contributors", errors="ignore")
    )


def test_dataframe_input(pain_api_and_cli, pain_dir, tmp_path):
    from csale_app.io.readers import read_studyset

    res, _ = pain_api_and_cli
    foci = read_studyset(pain_dir / "pain.json")[
        ["study_id", "contrast_id", "x", "y", "z", "space", "sample_size"]
    ]
    df_res = ALE(n_iters=60, nprocs=1, min_experiments=5, random_seed=11).fit(foci)
    assert np.array_equal(df_res.get_map("z").get_fdata(), res.get_map("z").get_fdata())
    # recorded as what it is: no (deleted) temporary file anywhere
    what = f"pandas DataFrame ({len(foci)} rows)"
    assert df_res.source == what and df_res.summary.source == what
    folder = df_res.to_bids(tmp_path / "df")
    side = json.loads(next(folder.glob("*_desc-input_foci.json")).read_text())
    assert side["Source"] == what
    desc = json.loads((tmp_path / "df" / "dataset_description.json").read_text())
    assert "SourceDatasets" not in desc


def test_options_are_checked_like_the_cli():
    with pytest.raises(TypeError, match="unknown options"):
        ALE(n_iter=100)
    with pytest.raises(ValueError, match="use n_iters=1002 or more") as err:
        CSALE(n_iters=500)
    # rendered from the option names for the API, not rewritten from the CLI's flags
    assert "--" not in str(err.value) and "C-SALE" in str(err.value)
    assert "the other n - 1" in str(err.value) and "voxel_thresh=0.001" in str(err.value)
    assert ALE().get_params()["n_iters"] == 10000


def test_csale_with_database_equals_cli(tmp_path):
    from csale_app.io.demo_data import write_demo_input

    inp = tmp_path / "in"
    write_demo_input(inp)
    db = tmp_path / "db"
    db.mkdir()
    shutil.copy(inp / "flanker.tsv", db / "flanker.tsv")
    args = ["--n-iters", "120", "--voxel-thresh", "0.01", "--nprocs", "1", "--quiet"]
    code = main(
        [
            str(inp),
            str(tmp_path / "cli"),
            "group",
            "--analyses",
            "csale",
            "--studyset-label",
            "nback",
            "--database",
            str(db),
            "--roi-coords=-30,-62,-28",
            "--roi-radius",
            "12",
            *args,
        ]
    )
    assert code == 0
    res = CSALE(
        n_iters=120, voxel_thresh=0.01, nprocs=1, roi_coords=[(-30, -62, -28)], roi_radius=12
    ).fit(inp / "nback.tsv", database=db)
    res.to_bids(tmp_path / "api")
    a = tree_digest(tmp_path / "api" / "studyset-nback")
    assert a == tree_digest(tmp_path / "cli" / "studyset-nback")
    assert any("meta-csale_clusters" in k for k in a)
    assert res.report(tmp_path / "api").name == "report.html"


def test_no_import_cycle_inside_the_package():
    """Each module imports cleanly on its own, first, in a fresh interpreter, and the
    module graph (static imports at module level) has no cycle."""
    import ast

    root = Path(__file__).resolve().parents[2] / "csale_app"
    graph = {}
    for path in root.rglob("*.py"):
        mod = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        mod = mod.removesuffix(".__init__")
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.level:
                base = mod.split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {(target, f"{target}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("csale_app")}
        graph[mod] = deps

    def resolve(dep):  # "from pkg import name": the submodule if there is one, else pkg
        if isinstance(dep, tuple):
            return dep[1] if dep[1] in graph else dep[0]
        return dep

    graph = {m: {resolve(d) for d in deps} for m, deps in graph.items()}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join(stack + [m, d])}"
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    code = "import csale_app.api, csale_app.pipeline, csale_app.cli.run, csale_app.stages"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_macm_estimator_gives_seed_tables_and_both_maps(pain_dir):
    """MACM from the API: the seed's selected experiments, whole-brain ALE and C-SALE."""
    res = MACM(
        n_iters=30,
        voxel_thresh=0.05,
        nprocs=1,
        min_experiments=3,
        roi_coords=[(38, 4, 2)],
        roi_radius=20,
    ).fit(pain_dir / "pain.json")
    assert res.seeds == ["spheres1r20"]
    selected = res.get_table("experiments")
    assert len(selected) >= 3 and selected["selected"].all()
    ale = res.get_map("z", meta="ale")
    csale = res.get_map("z", meta="csale")
    assert ale.shape == csale.shape == (91, 109, 91)
    assert np.asanyarray(ale.dataobj).any()


def test_errors_are_python_builtins_for_api_users(pain_dir, tmp_path):
    """An API user catches our errors with ordinary except clauses; each keeps its exit code."""
    import pandas as pd

    from csale_app import errors

    with pytest.raises(FileNotFoundError, match="cerebelum"):
        ALE(n_iters=60).fit(pain_dir / "pain.json", roi="cerebelum")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ALE(n_iters=60).fit(tmp_path / "absent.tsv")
    no_z = pd.DataFrame(
        {
            "study_id": ["a"],
            "contrast_id": ["1"],
            "x": [0.0],
            "y": [0.0],
            "space": ["MNI"],
            "sample_size": [10],
        }
    )
    with pytest.raises(ValueError, match="missing required column"):
        ALE(n_iters=60).fit(no_z)
    assert issubclass(errors.InputError, ValueError) and errors.InputError.exit_code == 65
    assert issubclass(errors.UsageError, ValueError) and errors.UsageError.exit_code == 64
    assert issubclass(errors.InputNotFoundError, FileNotFoundError)
    assert issubclass(errors.InputPermissionError, PermissionError)
    assert errors.InputPermissionError.exit_code == errors.MissingInputError.exit_code == 66
    assert issubclass(errors.OutputError, OSError) and errors.OutputError.exit_code == 73
    assert issubclass(errors.EmptySelectionError, ValueError)
    assert issubclass(errors.DeviceError, RuntimeError)
    assert issubclass(errors.ServiceUnavailableError, ConnectionError)
    assert errors.ServiceUnavailableError.exit_code == 69
    # an OSError subclass still prints its message, not an (errno, strerror) pair
    assert str(errors.OutputError("out: cannot write")) == "out: cannot write"
