"""In-memory inputs of the Python API: errors in the caller's terms (the DataFrame's row
label and column, the Dataset's study and contrast; never a temporary file), sources
recorded as what they are, and option names rendered for the API or the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csale_app import ALE
from csale_app.errors import InputError
from csale_app.io.studyset import load_studyset, read_source
from csale_app.io.templates import load_brain_mask


def foci(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study_id": [f"s{i // 2}" for i in range(n)],
            "contrast_id": "c1",
            "x": np.arange(n, dtype=float) * 4 - 10,
            "y": -20.0,
            "z": 8.0,
            "space": "MNI",
            "sample_size": 12,
        }
    )


def test_missing_column_names_the_dataframe_and_column():
    with pytest.raises(ValueError) as err:
        ALE(n_iters=30).fit(foci().drop(columns="z"))
    text = str(err.value)
    assert isinstance(err.value, InputError)
    assert "pandas DataFrame (6 rows)" in text and "missing required column(s) z" in text
    assert ".tsv" not in text and "tmp" not in text


def test_nan_coordinate_names_the_row_label_and_column():
    df = foci().set_axis(list("abcdef"))
    df.loc["d", "y"] = np.nan
    with pytest.raises(ValueError, match=r"row 'd', column 'y': y coordinate is missing"):
        read_source(df)
    df["y"] = df["y"].astype(object)
    df.loc["d", "y"] = "twelve"
    with pytest.raises(ValueError, match=r"row 'd', column 'y': y coordinate 'twelve' is not"):
        read_source(df)


def test_bad_space_and_mixed_sample_sizes_are_named():
    df = foci()
    df.loc[3, "space"] = "Colin27"
    with pytest.raises(ValueError, match=r"row 3, column 'space': unknown coordinate space"):
        read_source(df)
    df = foci()
    df.loc[1, "sample_size"] = 30
    with pytest.raises(
        ValueError,
        match=r"row 1, column 'sample_size': experiment 's0'/'c1' "
        r"has sample size 30",
    ):
        read_source(df)


def test_missing_sample_size_names_the_row_label_and_column():
    """The experiment builder's sample-size checks name the DataFrame's index label and
    the column it read (an alias here), not a 1-based position in a table."""
    brain = load_brain_mask()
    df = foci().rename(columns={"sample_size": "n"}).set_axis([f"r{i}" for i in range(6)])
    df["n"] = df["n"].astype(float)
    df.loc[["r4", "r5"], "n"] = np.nan
    with pytest.raises(ValueError) as err:
        load_studyset(df, brain.affine, brain.shape)
    text = str(err.value)
    assert isinstance(err.value, InputError) and err.value.line is None
    assert text.startswith("pandas DataFrame (6 rows): row 'r4', column 'n': experiment 's2'")
    assert "has no positive sample size" in text
    df.loc[["r4", "r5"], "n"] = 0.5
    with pytest.raises(ValueError, match=r"\(6 rows\): row 'r4', column 'n': experiment 's2' "):
        load_studyset(df, brain.affine, brain.shape)
    # with a default or a fixed kernel the same table is accepted
    df.loc[["r4", "r5"], "n"] = np.nan
    got = load_studyset(df, brain.affine, brain.shape, default_sample_size=20)
    assert got.experiments.sample_size.tolist() == [12.0, 12.0, 20.0]


def test_nimare_dataset_error_names_study_and_contrast(pain_json):
    from nimare.dataset import Dataset

    with pytest.warns(FutureWarning):
        dset = Dataset(str(pain_json))
    row = dset.coordinates.index[3]
    study, contrast = dset.coordinates.loc[row, ["study_id", "contrast_id"]]
    dset.coordinates.loc[row, "x"] = np.nan
    with pytest.raises(ValueError) as err:
        read_source(dset)
    text = str(err.value)
    assert f"study {study!r}, contrast {contrast!r}" in text and "x coordinate is missing" in text
    assert text.startswith("NiMARE Dataset (")


def test_dataframe_studyset_is_in_memory_with_a_content_digest():
    mask = load_brain_mask()
    shape = mask.shape
    first = load_studyset(foci(), mask.affine, shape)
    assert first.label == "studyset" and first.source == "pandas DataFrame (6 rows)"
    assert first.experiments.n_experiments == 3 and first.experiments.n_foci == 6
    again = load_studyset(foci(), mask.affine, shape, label="mine")
    assert again.label == "mine" and again.digest == first.digest
    moved = foci()
    moved.loc[0, "x"] += 2
    assert load_studyset(moved, mask.affine, shape).digest != first.digest
    # the same foci from a TSV file give the same experiments
    assert set(first.experiments.foci["source_file"]) == {"pandas DataFrame (6 rows)"}


def test_option_names_per_style():
    from csale_app.settings import Settings, option_name
    from csale_app.validate import usage_problems

    assert option_name("voxel_thresh") == "--voxel-thresh"
    assert option_name("voxel_thresh", "api") == "voxel_thresh="
    assert option_name("nprocs") == "--nprocs" and option_name("work_dir") == "--work-dir"
    s = Settings(analyses=("csale",), n_iters=500)
    cli, api = usage_problems(s), usage_problems(s, style="api")
    assert cli.startswith("--n-iters 500 is too small") and "--voxel-thresh 0.001" in cli
    assert api.startswith("n_iters=500 is too small") and "--" not in api
    assert "C-SALE" in api and "n - 1" in api and "n _ 1" not in api
    s = Settings(roi="cerebellum", roi_coords=((0.0, 0.0, 0.0),))
    assert usage_problems(s, style="api") == "roi= and roi_coords= are mutually exclusive"
    with pytest.raises(ValueError, match="style"):
        option_name("n_iters", "python")


def small_foci() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 8 * 5
    return pd.DataFrame(
        {
            "study_id": [f"s{i // 5}" for i in range(n)],
            "x": rng.uniform(-40, 40, n),
            "y": rng.uniform(-60, 20, n),
            "z": rng.uniform(-20, 40, n),
            "space": "MNI",
            "sample_size": 15,
        }
    )


def test_fit_keeps_checkpoints_only_in_a_given_work_dir(tmp_path, monkeypatch):
    from csale_app.io import workdir

    opts = dict(n_iters=40, nprocs=1, min_experiments=5, random_seed=2, chunk_size=20)
    writes = []
    real = workdir.write_atomic
    monkeypatch.setattr(
        workdir, "write_atomic", lambda path, fn: writes.append(path) or real(path, fn)
    )
    res = ALE(**opts).fit(small_foci())
    assert writes == [] and res.label == "studyset"  # nothing on disk without work_dir
    work = tmp_path / "work"
    again = ALE(**opts, work_dir=str(work)).fit(small_foci())
    assert len(writes) == 2 and all(work in p.parents for p in writes)  # 2 chunks of 20
    assert not any(work.rglob("*.npz"))  # removed once the results are in memory
    assert np.array_equal(again.get_map("z").get_fdata(), res.get_map("z").get_fdata())
