"""Neurosynth v7 / NeuroQuery v1 file sets: the reader against NiMARE's
``convert_neurosynth_to_dataset`` on NiMARE's bundled 20-study sample (same studies,
coordinates within 1e-6 mm after TAL->MNI, term weights exact, the same term selections as
``Dataset.get_studies_by_label``), NeuroQuery's file names, ALE with a default sample size
against NiMARE's ``ALE(kernel__sample_size=20)``, and every malformed file refused (65)."""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csale_app.cli.run import main
from csale_app.errors import InputError, UsageError
from csale_app.io.database import load_database
from csale_app.io.neurosynth import find_fileset, read_fileset
from csale_app.io.readers import database_sources, find_studysets, read_studyset
from csale_app.io.terms import load_features, term_label

from tests import report_pages

NIMARE_DATA = Path(__import__("nimare").__file__).parent / "tests" / "data"
PREFIX = "data-neurosynth_version-7_"
FEATURES = PREFIX + "vocab-terms_source-abstract_type-tfidf_features.npz"
VOCABULARY = PREFIX + "vocab-terms_vocabulary.txt"
THRESHOLDS = (0.001, 0.05, 0.1, 0.2)


def copy_sample(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in NIMARE_DATA.glob(PREFIX + "*"):
        shutil.copyfile(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return copy_sample(tmp_path_factory.mktemp("ns") / "neurosynth")


def nimare_dataset(
    folder: Path, prefix: str = PREFIX, features: str = FEATURES, vocabulary: str = VOCABULARY
):
    from nimare.io import convert_neurosynth_to_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_neurosynth_to_dataset(
            str(folder / (prefix + "coordinates.tsv.gz")),
            str(folder / (prefix + "metadata.tsv.gz")),
            annotations_files={
                "features": str(folder / features),
                "vocabulary": str(folder / vocabulary),
            },
        )


@pytest.fixture(scope="module")
def nimare_dset(sample):
    return nimare_dataset(sample)


@pytest.fixture(scope="module")
def ours(sample, brain):
    img, mask = brain
    return load_database(database_sources(sample), img.affine, mask.shape, default_sample_size=20)


# ---- the reader against NiMARE --------------------------------------------------------
def test_file_set_is_recognised_by_its_names(sample):
    fs = find_fileset(sample)
    assert (fs.database, fs.version) == ("neurosynth", "7")
    assert [f.name for f in fs.feature_sets] == ["terms_abstract_tfidf"]
    assert database_sources(sample) == [sample]
    # a file set folder in INPUT_DIR is a studyset, read like any other
    assert find_studysets(sample.parent) == [sample]
    foci = read_studyset(sample)
    assert foci.attrs["format"] == "neurosynth" and len(foci) == 1420


def test_same_studies_and_coordinates_as_nimare(ours, nimare_dset):
    """One study = one experiment; TAL converted, UNKNOWN as MNI (NiMARE's rule)."""
    dset = nimare_dset
    assert sorted(f"{s}-1" for s in ours.study_ids) == sorted(dset.ids)
    ref = dset.coordinates
    for k, study in enumerate(ours.study_ids):
        got = ours.xyz_mni[ours.focus_start[k] : ours.focus_start[k + 1]]
        want = ref.loc[ref["id"] == f"{study}-1", ["x", "y", "z"]].to_numpy(float)
        assert got.shape == want.shape
        got = got[np.lexsort(got.T[::-1])]
        want = want[np.lexsort(want.T[::-1])]
        assert np.abs(got - want).max() <= 1e-6, study
    spaces = ours.table.set_index("study_id")["space"]
    assert set(spaces) == {"MNI", "TAL"}  # UNKNOWN became MNI
    assert any(
        "5 of 20 studies have coordinate space UNKNOWN" in w for w in ours.foci.attrs["warnings"]
    )


def test_term_weights_are_exact(sample, nimare_dset):
    tf = load_features(find_fileset(sample), None)
    ann = nimare_dset.annotations.set_index("study_id")
    dense = tf.matrix.toarray()
    for j, term in enumerate(tf.vocabulary):
        want = ann[f"terms_abstract_tfidf__{term}"].reindex(tf.study_ids).to_numpy()
        np.testing.assert_array_equal(dense[:, j], want)


def test_term_selections_are_nimares(sample, nimare_dset):
    tf = load_features(find_fileset(sample), None)
    n_nonempty = 0
    for term in tf.vocabulary:
        for thr in THRESHOLDS:
            ids, weights = tf.select(term, thr)
            want = nimare_dset.get_studies_by_label(f"terms_abstract_tfidf__{term}", thr)
            assert sorted(f"{i}-1" for i in ids) == sorted(want), (term, thr)
            assert (weights >= thr).all()
            n_nonempty += bool(len(ids))
    assert n_nonempty > 50  # the comparison is not between empty selections


def test_term_labels():
    assert term_label("working memory") == "termworkingmemory"
    assert term_label("Theory-of-Mind") == "termTheoryofMind"


# ---- NeuroQuery's file names ------------------------------------------------------------
def write_neuroquery(src: Path, folder: Path) -> Path:
    """A NeuroQuery v1 file set made of the Neurosynth sample (coordinates id, table_id,
    x, y, z; metadata without a space column; vocab neuroquery6308)."""
    folder.mkdir(parents=True)
    nq = "data-neuroquery_version-1_"
    coords = pd.read_table(src / (PREFIX + "coordinates.tsv.gz"))
    coords[["id", "table_id", "x", "y", "z"]].to_csv(
        folder / (nq + "coordinates.tsv.gz"), sep="\t", index=False
    )
    meta = pd.read_table(src / (PREFIX + "metadata.tsv.gz"))
    meta[["id", "title"]].to_csv(folder / (nq + "metadata.tsv.gz"), sep="\t", index=False)
    shutil.copyfile(
        src / FEATURES,
        folder / (nq + "vocab-neuroquery6308_source-combined_type-tfidf_features.npz"),
    )
    shutil.copyfile(src / VOCABULARY, folder / (nq + "vocab-neuroquery6308_vocabulary.txt"))
    return folder


def test_neuroquery_file_set(sample, tmp_path, brain):
    folder = write_neuroquery(sample, tmp_path / "neuroquery")
    fs = find_fileset(folder)
    assert (fs.database, fs.version) == ("neuroquery", "1")
    assert [f.name for f in fs.feature_sets] == ["neuroquery6308_combined_tfidf"]
    foci = read_fileset(fs)
    assert set(foci["space"]) == {"MNI"}  # NeuroQuery's coordinates are MNI
    assert not any("UNKNOWN" in w for w in foci.attrs["warnings"])
    nq = "data-neuroquery_version-1_"
    dset = nimare_dataset(
        folder,
        nq,
        nq + "vocab-neuroquery6308_source-combined_type-tfidf_features.npz",
        nq + "vocab-neuroquery6308_vocabulary.txt",
    )
    img, mask = brain
    exps = load_database([folder], img.affine, mask.shape, kernel_fwhm=10.0)
    ref = dset.coordinates
    for k, study in enumerate(exps.study_ids):
        got = np.sort(exps.xyz_mni[exps.focus_start[k] : exps.focus_start[k + 1]], axis=0)
        want = np.sort(ref.loc[ref["id"] == f"{study}-1", ["x", "y", "z"]].to_numpy(float), axis=0)
        assert np.abs(got - want).max() <= 1e-6
    tf = load_features(fs, "neuroquery6308")
    for term in tf.vocabulary[:40]:
        ids, _ = tf.select(term, 0.001)
        want = dset.get_studies_by_label(f"neuroquery6308_combined_tfidf__{term}", 0.001)
        assert sorted(f"{i}-1" for i in ids) == sorted(want)


# ---- sample sizes -----------------------------------------------------------------------
def test_no_sample_sizes_is_refused_naming_file_and_option(sample, brain):
    img, mask = brain
    with pytest.raises(InputError) as err:
        load_database([sample], img.affine, mask.shape)
    assert PREFIX + "metadata.tsv.gz" in str(err.value)
    assert "--default-sample-size" in str(err.value) and "--kernel-fwhm" in str(err.value)
    exps = load_database([sample], img.affine, mask.shape, kernel_fwhm=8.0)
    assert np.isnan(exps.sample_size).all()


def test_default_sample_size_is_counted(ours):
    assert (ours.sample_size == 20).all()
    assert (ours.table["sample_size_source"] == "--default-sample-size").all()


def test_ale_with_default_sample_size_matches_nimare(ours, nimare_dset, brain):
    from nimare.meta.cbma.ale import ALE

    from csale_app.kernels.plan import build_grid
    from csale_app.stats.ale import kernels_for, observed_ale

    img, mask = brain
    grid = build_grid(mask)
    table, kid = kernels_for(ours, grid, None, 8.0)
    obs = observed_ale(ours, grid, table, kid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ALE(kernel__sample_size=20).fit(nimare_dset)
    ref = result.get_map("stat", return_type="array")
    assert ref.max() > 0.01
    assert np.abs(ref - obs.stat).max() <= 1e-6


# ---- malformed files: 65 naming the file (and line) -------------------------------------
def rewrite_gz(path: Path, edit) -> None:
    text = gzip.decompress(path.read_bytes()).decode()
    path.write_bytes(gzip.compress(edit(text).encode()))


def broken(tmp_path: Path, what: str) -> Path:
    folder = copy_sample(tmp_path / "db")
    coords, meta = folder / (PREFIX + "coordinates.tsv.gz"), folder / (PREFIX + "metadata.tsv.gz")
    if what == "truncated":
        data = coords.read_bytes()
        coords.write_bytes(data[: len(data) // 2])
    elif what == "duplicate":
        rewrite_gz(meta, lambda t: t + t.splitlines()[3] + "\n")
    elif what == "outside":
        rewrite_gz(
            coords, lambda t: t.replace("\t38.0\t-48.0\t49.0\n", "\t38.0\t-48.0\t149.0\n", 1)
        )
    elif what == "not-a-number":
        rewrite_gz(coords, lambda t: t.replace("\t52.0\t-62.0\t14.0\n", "\t52.0\tabc\t14.0\n", 1))
    elif what == "ragged":
        rewrite_gz(
            coords, lambda t: t.replace("\t52.0\t-62.0\t14.0\n", "\t52.0\t-62.0\t14.0\t1\n", 1)
        )
    elif what == "unlisted":
        rewrite_gz(coords, lambda t: t.replace("9065511\t", "1234\t", 1))
    elif what == "rows":
        from scipy import sparse

        m = sparse.load_npz(folder / FEATURES)
        sparse.save_npz(folder / FEATURES, sparse.csc_matrix(m.tocsr()[:19]))
    elif what == "vocabulary":
        lines = (folder / VOCABULARY).read_text().splitlines()
        (folder / VOCABULARY).write_text("\n".join(lines[:-1]) + "\n")
    elif what == "npz":
        data = (folder / FEATURES).read_bytes()
        (folder / FEATURES).write_bytes(data[: len(data) // 2])
    return folder


ERRORS = [  # (case, file named, line named or None, words in the message)
    ("truncated", PREFIX + "coordinates.tsv.gz", None, "truncated gzip"),
    ("duplicate", PREFIX + "metadata.tsv.gz", 22, "duplicate id"),
    ("outside", PREFIX + "coordinates.tsv.gz", 2, "outside the template"),
    ("not-a-number", PREFIX + "coordinates.tsv.gz", 3, "not a number"),
    ("ragged", PREFIX + "coordinates.tsv.gz", 3, "fields"),
    ("unlisted", PREFIX + "coordinates.tsv.gz", 2, "not in"),
    ("rows", FEATURES, None, "19 rows"),
    ("vocabulary", VOCABULARY, None, "99 terms"),
    ("npz", FEATURES, None, "sparse features"),
]


def run_cli(tmp_path: Path, db: Path, *extra: str) -> int:
    inp = tmp_path / "in"
    inp.mkdir(exist_ok=True)
    return main(
        [
            str(inp),
            str(tmp_path / "out"),
            "group",
            "--database",
            str(db),
            "--analyses",
            "csale",
            "--default-sample-size",
            "20",
            "--quiet",
            *extra,
        ]
    )


@pytest.mark.parametrize("case, file, line, words", ERRORS, ids=[e[0] for e in ERRORS])
def test_malformed_file_sets_exit_65_naming_file_and_line(
    case, file, line, words, tmp_path, capsys
):
    db = broken(tmp_path, case)
    assert run_cli(tmp_path, db, "--term", "activations") == 65
    message = capsys.readouterr().err.strip().splitlines()[-1]
    where = f"{file}:{line}:" if line is not None else f"{file}:"
    assert where in message and words in message, message
    assert not (tmp_path / "out").exists()  # refused before OUTPUT_DIR is made


def test_unknown_term_is_a_usage_error_with_close_matches(sample, tmp_path, capsys):
    assert run_cli(tmp_path, sample, "--term", "activation") == 64
    message = capsys.readouterr().err
    assert "'activation' is not in the vocabulary" in message and "'activations'" in message


def test_term_needs_a_file_set_database(tmp_path, demo_input, capsys):
    code = main(
        [
            str(demo_input),
            str(tmp_path / "out"),
            "group",
            "--analyses",
            "ale",
            "--term",
            "pain",
            "--quiet",
        ]
    )
    assert code == 64 and "Neurosynth or NeuroQuery file set" in capsys.readouterr().err


def test_reader_errors_directly(tmp_path):
    folder = copy_sample(tmp_path / "half")
    (folder / (PREFIX + "metadata.tsv.gz")).unlink()
    with pytest.raises(InputError, match="needs data-neurosynth_version-7_metadata"):
        find_fileset(folder)
    folder = copy_sample(tmp_path / "novocab")
    (folder / VOCABULARY).unlink()
    with pytest.raises(InputError, match="vocabulary .* is missing"):
        find_fileset(folder)
    folder = copy_sample(tmp_path / "two")
    with pytest.raises(UsageError, match="--term-vocab nope: no such feature set"):
        load_features(find_fileset(folder), "nope")


# ---- a term studyset end to end ---------------------------------------------------------
def test_cli_term_studysets_end_to_end(sample, tmp_path):
    """INPUT_DIR holds no table: two terms of the Neurosynth sample, C-SALE in the
    cerebellum against the whole database; the term with too few studies is skipped with
    the reason in the report; the selection is a table with a sidecar."""
    import json

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    code = main(
        [
            str(inp),
            str(out),
            "group",
            "--database",
            str(sample),
            "--term",
            "activations",
            "--term",
            "able",
            "--analyses",
            "csale",
            "--roi",
            "cerebellum",
            "--default-sample-size",
            "20",
            "--min-experiments",
            "3",
            "--n-iters",
            "40",
            "--voxel-thresh",
            "0.05",
            "--cluster-alpha",
            "0.1",
            "--nprocs",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    folder = out / "studyset-termactivations"
    table = pd.read_csv(
        folder / "studyset-termactivations_desc-termstudies_table.tsv",
        sep="\t",
        dtype={"study_id": str},
    )
    tf = load_features(find_fileset(sample), None)
    ids, weights = tf.select("activations", 0.001)
    assert list(table["study_id"]) == list(ids)
    np.testing.assert_array_equal(table["weight"].to_numpy(), weights)
    side = json.loads((folder / "studyset-termactivations_desc-termstudies_table.json").read_text())
    assert side["Term"] == "activations" and side["Threshold"] == 0.001
    assert side["NumberOfStudiesSelected"] == len(ids) == 8
    stat = next(folder.glob("*meta-csale_stat-z_statmap.json"))
    stat_side = json.loads(stat.read_text())
    assert stat_side["DefaultSampleSize"]["SampleSize"] == 20
    assert stat_side["DefaultSampleSize"]["ExperimentsUsingIt"] >= 3
    assert stat_side["ReferenceDatabase"]["n_experiments"] == 20
    assert stat_side["ReferenceDatabase"]["n_experiments_default_sample_size"] == 20
    assert not (out / "studyset-termable").exists()
    report = report_pages.text(out)
    assert (
        "studyset &#39;termable&#39; skipped" in report or "studyset 'termable' skipped" in report
    )
    assert "were assigned N = 20" in report and "&#39;activations&#39;" in report
    assert "5 of 20 studies have coordinate space UNKNOWN and are treated as MNI" in report
    assert "studies with weight &gt;= 0.001 in terms_abstract_tfidf" in report


def test_api_term_studyset(sample, tmp_path):
    from csale_app import ALE

    res = ALE(
        n_iters=30,
        default_sample_size=20,
        min_experiments=3,
        roi_coords=[(0, -60, -30)],
        roi_radius=30,
    ).fit(term="activations", database=sample)
    assert res.label == "termactivations"
    folder = res.to_bids(tmp_path / "out")
    table = pd.read_csv(
        folder / "studyset-termactivations_desc-termstudies_table.tsv",
        sep="\t",
        dtype={"study_id": str},
    )
    assert len(table) == 8
    with pytest.raises(TypeError):
        ALE(n_iters=30).fit()
    with pytest.raises(ValueError, match="needs database"):
        ALE(n_iters=30).fit(term="activations")


def test_default_sample_size_fills_only_missing_sizes(tmp_path, brain):
    """Any format: experiments without a sample size get the default, the others keep
    theirs; the experiments table says which; without the option the message names it."""
    from csale_app.io.experiments import build_experiments

    img, mask = brain
    table = tmp_path / "set.tsv"
    table.write_text(
        "study_id\tcontrast_id\tx\ty\tz\tspace\tsample_size\n"
        "a\t1\t0\t0\t0\tMNI\t12\nb\t1\t10\t10\t10\tMNI\t\n"
    )
    foci = read_studyset(table)
    with pytest.raises(InputError, match="--default-sample-size N or --kernel-fwhm"):
        build_experiments(foci, img.affine, mask.shape)
    exps = build_experiments(foci, img.affine, mask.shape, default_sample_size=20)
    assert list(exps.sample_size) == [12, 20]
    assert list(exps.table["sample_size_source"]) == ["input", "--default-sample-size"]
    plain = build_experiments(foci.assign(sample_size=12.0), img.affine, mask.shape)
    assert "sample_size_source" not in plain.table  # existing outputs keep their columns


def test_default_sample_size_and_kernel_fwhm_are_exclusive(tmp_path, capsys):
    code = main(
        [
            str(tmp_path),
            str(tmp_path / "out"),
            "group",
            "--default-sample-size",
            "20",
            "--kernel-fwhm",
            "8",
        ]
    )
    assert code == 64 and "mutually exclusive" in capsys.readouterr().err


def test_file_set_as_input_dir_database_folder(sample, tmp_path):
    from csale_app.pipeline import Pipeline
    from csale_app.settings import Settings

    inp = tmp_path / "in"
    copy_sample(inp / "database")
    files, source = Pipeline(Settings(), inp, tmp_path / "out").database_files([])
    assert files == [inp / "database"] and source == "INPUT_DIR/database/"
    assert find_studysets(inp) == []  # database/ is never a studyset
