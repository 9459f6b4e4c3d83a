"""The command line: random option combinations through the parser and the pre-run checks,
one-line usage errors, "did you mean", and checks that fail before OUTPUT_DIR exists."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from csale_app.cli.parser import parse_settings
from csale_app.cli.run import main
from csale_app.settings import Settings
from csale_app.validate import usage_problems

VALUES = {
    "--analyses": st.lists(
        st.sampled_from(["ale", "csale", "macm", "x", ""]), min_size=0, max_size=3
    ),
    "--n-iters": st.sampled_from(
        [
            "1",
            "20",
            "21",
            "1001",
            "1002",
            "5000",
            "0",
            "-3",
            "1e3",
            "abc",
            str(2**31),
            "99999999999",
        ]
    ),
    "--voxel-thresh": st.sampled_from(["0.001", "0.01", "0.5", "0", "1", "nan", "-0.1", "x"]),
    "--cluster-alpha": st.sampled_from(["0.05", "0.2", "0.99", "0", "1.5", "inf"]),
    "--random-seed": st.sampled_from(["0", "7", str(2**64 - 1), str(2**64), "-1", "1.5"]),
    "--roi": st.sampled_from(["cerebellum", "/nonexistent.nii.gz"]),
    "--roi-coords": st.lists(
        st.sampled_from(["1,2,3", "-40,20,30", "1,2", "a,b,c", "nan,1,2"]), min_size=0, max_size=2
    ),
    "--roi-radius": st.sampled_from(["10", "0", "-1", "inf"]),
    "--min-cluster-size": st.sampled_from(["0", "50", "-2", "1.5"]),
    "--kernel-fwhm": st.sampled_from(["8", "0", "nan"]),
    "--subsample-size": st.sampled_from(
        ["0.8", "25", "2", "1", "0", "1.0", "2.5", "-3", "nan", "x"]
    ),
    "--nprocs": st.sampled_from(["1", "2", "0"]),
    "--batch-size": st.sampled_from(["auto", "64", "0", "big"]),
    "--csale-null": st.sampled_from(["probabilistic", "deterministic", "other"]),
    "--macm-seed": st.sampled_from(["roi", "clusters", "each-cluster", "none"]),
    "--device": st.sampled_from(["auto", "cpu", "cuda", "tpu"]),
    "--dask-scheduler": st.sampled_from(
        [
            "tcp://10.0.0.5:8786",
            "node7:8786",
            "[::1]:1",
            "::not an address::",
            "tcp://h",
            "http://h:1",
        ]
    ),
    "--dask-scheduler-file": st.sampled_from(["/scratch/scheduler.json"]),
    "--dask-timeout": st.sampled_from(["20", "0.5", "0", "-1", "x"]),
    "--n-iter": st.sampled_from(["500"]),  # an abbreviation: must be refused
    "--bogus": st.sampled_from(["1"]),
}


@st.composite
def argv(draw):
    args = []
    for flag in draw(st.lists(st.sampled_from(sorted(VALUES)), unique=True, max_size=6)):
        value = draw(VALUES[flag])
        args += [flag, *value] if isinstance(value, list) else [flag, value]
    return args


@hsettings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(args=argv())
def test_any_option_combination_is_valid_settings_or_a_one_line_usage_error(tmp_path, capsys, args):
    full = [str(tmp_path), str(tmp_path / "out"), "group", *args]
    try:
        _, s = parse_settings(full)
    except SystemExit as exc:
        assert exc.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("csale-app: error: "), err
        assert "Traceback" not in err[0]
        return
    assert isinstance(s, Settings)
    assert usage_problems(s) is None
    assert 0 <= s.random_seed <= 2**64 - 1
    assert "--n-iter" not in args and "--bogus" not in args


def test_usage_error_through_main_is_64_and_one_line(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--n-iter", "500"]) == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean --n-iters?" in err[0] and "--help" in err[0]


def test_misspelt_builtin_roi_names_the_builtin(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    code = main(
        [
            str(inp),
            str(tmp_path / "out"),
            "group",
            "--roi",
            "cerebelum",
            "--analyses",
            "ale",
            "--n-iters",
            "25",
            "--quiet",
        ]
    )
    assert code == 66
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean the built-in ROI 'cerebellum'" in err[0]


def test_help_lists_examples_formats_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--help"])
    out = capsys.readouterr().out
    for text in (
        "examples:",
        "--studyset-label",
        "input formats",
        "Sleuth",
        "exit codes",
        "73 output",
    ):
        assert text in out


def test_cuda_without_gpu_fails_before_the_output_folder_exists(
    tmp_path, pain_json, capsys, monkeypatch
):
    from csale_app.kernels import device

    monkeypatch.setattr(device, "cuda_status", lambda: (False, "no CUDA driver"))
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    out = tmp_path / "out"
    code = main(
        [
            str(inp),
            str(out),
            "group",
            "--analyses",
            "ale",
            "--device",
            "cuda",
            "--n-iters",
            "25",
            "--quiet",
        ]
    )
    assert code == 1
    assert "--device cuda" in capsys.readouterr().err
    assert not out.exists()


def test_empty_database_folder_is_66_and_unreachable_database_is_18(tmp_path, pain_json, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    empty = tmp_path / "emptydb"
    empty.mkdir()
    args = [
        "group",
        "--analyses",
        "csale",
        "--n-iters",
        "30",
        "--voxel-thresh",
        "0.05",
        "--min-experiments",
        "3",
        "--quiet",
    ]
    assert main([str(inp), str(tmp_path / "o1"), *args, "--database", str(empty)]) == 66
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0]
    assert not (tmp_path / "o1").exists()
    far = tmp_path / "far.tsv"  # foci in the frontal pole only, ROI in the cerebellum
    far.write_text(
        "study_id\tcontrast_id\tx\ty\tz\tspace\tsample_size\n"
        + "".join(f"s{k}\tc\t{k}\t66\t0\tMNI\t20\n" for k in range(5))
    )
    code = main(
        [
            str(inp),
            str(tmp_path / "o2"),
            *args,
            "--database",
            str(far),
            "--roi-coords=38,4,2",
            "--roi-radius",
            "20",
            "--roi-dilation-mm",
            "0",
            "--kernel-fwhm",
            "6",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 18, err
    assert "no foci within kernel reach" in err[-1]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_work_dir_in_the_input_folder_is_64_before_anything_is_written(
    tmp_path, pain_json, capsys, where
):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    before = sorted(p.name for p in inp.rglob("*"))
    work = inp if where == "same" else inp / "work"
    code = main(
        [
            str(inp),
            str(tmp_path / "out"),
            "group",
            "--analyses",
            "ale",
            "--n-iters",
            "25",
            "-w",
            str(work),
            "--quiet",
        ]
    )
    assert code == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "work folder" in err[0] and str(work) in err[0]
    assert sorted(p.name for p in inp.rglob("*")) == before
    assert not (tmp_path / "out").exists()


def test_default_verbosity_names_the_device_in_one_line_and_quiet_hides_it(
    tmp_path, pain_json, capsys
):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    args = ["group", "--analyses", "ale", "--n-iters", "25", "--device", "cpu"]
    assert main([str(inp), str(tmp_path / "o1"), *args]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "compute device" in x]
    assert len(lines) == 1 and "CPU (numba" in lines[0]
    assert main([str(inp), str(tmp_path / "o2"), *args, "--quiet"]) == 0
    assert "compute device" not in capsys.readouterr().err
