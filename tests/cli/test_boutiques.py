"""boutiques.json: valid, path inputs typed File, command lines as expected, and it runs.

bosh mounts into a container only the launch folder and the File inputs (at the same absolute
path), so every path the app reads or writes is a File input; the app's own run is checked
with ``bosh exec launch --no-container`` writing to an absolute folder outside the launch
folder (the case that used to lose every output in a container). The container launch itself
is checked by hand: scripts/container_check.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR = ROOT / "boutiques.json"


@pytest.fixture(scope="module")
def descriptor() -> dict:
    return json.loads(DESCRIPTOR.read_text())


@pytest.fixture(scope="module")
def inputs(descriptor) -> dict[str, dict]:
    return {inp["id"]: inp for inp in descriptor["inputs"]}


def bosh():
    boutiques = pytest.importorskip("boutiques")
    return boutiques.bosh


def parser_actions() -> list[argparse.Action]:
    from csale_app.cli.parser import build_parser

    return [
        a
        for a in build_parser()._actions
        if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    ]


# -- the descriptor is valid and describes this version ------------------------------------


def test_bosh_validate():
    bosh()(["validate", str(DESCRIPTOR)])  # raises DescriptorValidationError when invalid


def test_descriptor_metadata(descriptor):
    from csale_app import __version__, errors

    version = re.search(
        r'__version__ = "([^"]+)"', (ROOT / "csale_app" / "_version.py").read_text()
    )[1]
    assert descriptor["schema-version"] == "0.5"
    assert descriptor["name"] == "csale-app"
    assert descriptor["tool-version"] == version == __version__
    assert descriptor["container-image"] == {
        "type": "docker",
        "image": f"csale-app:{version}",
        "entrypoint": True,
    }
    assert descriptor["command-line"].split()[:4] == [
        "csale-app",
        "[INPUT_DIR]",
        "[OUTPUT_DIR]",
        "[ANALYSIS_LEVEL]",
    ]
    assert "pypi.org" not in json.dumps(descriptor)  # no page that does not exist
    codes = {e["code"] for e in descriptor["error-codes"]}
    assert (
        codes
        == {
            errors.EXIT_OK,
            errors.EXIT_FAILURE,
            errors.EXIT_EMPTY_SELECTION,
            errors.EXIT_USAGE,
            errors.EXIT_DATA,
            errors.EXIT_NO_INPUT,
            errors.EXIT_UNAVAILABLE,
            errors.EXIT_CANT_CREATE,
        }
        == {0, 1, 18, 64, 65, 66, 69, 73}
    )
    for out in descriptor["output-files"]:
        assert out["path-template"].startswith("[OUTPUT_DIR]/")
    # The container user: documented (bosh exec launch -u).
    assert "-u" in descriptor["description"] and "uid 1000" in descriptor["description"]


def test_every_value_key_once_in_the_command_line(descriptor):
    cmd = descriptor["command-line"]
    for inp in descriptor["inputs"]:
        assert inp["value-key"] == f"[{inp['id'].upper()}]"
        assert cmd.count(inp["value-key"]) == 1, inp["id"]


# -- paths: every path-like input is a File (bosh mounts File inputs only) ------------------

PATH_INPUTS = ("input_dir", "output_dir", "roi", "database", "work_dir", "dask_scheduler_file")


def test_path_inputs_are_files(inputs):
    for name in PATH_INPUTS:
        assert inputs[name]["type"] == "File", name
    # --roi takes a path or a built-in name: the name is its own String input, same flag.
    assert inputs["roi_builtin"]["type"] == "String"
    assert inputs["roi_builtin"]["command-line-flag"] == inputs["roi"]["command-line-flag"]
    from csale_app.io.roi import BUILTIN

    assert inputs["roi_builtin"]["value-choices"] == list(BUILTIN)


def test_every_path_argument_of_the_parser_has_a_file_input(inputs):
    """A parser argument that takes a path (type Path or metavar PATH) maps to a File input."""
    by_flag: dict[str, list[dict]] = {}
    for inp in inputs.values():
        by_flag.setdefault(inp.get("command-line-flag", inp["value-key"]), []).append(inp)
    path_actions = [a for a in parser_actions() if a.type is Path or "PATH" in str(a.metavar or "")]
    assert {a.dest for a in path_actions} >= {
        "input_dir",
        "output_dir",
        "database",
        "roi",
        "work_dir",
    }
    for action in path_actions:
        if action.option_strings:
            matches = [i for f in action.option_strings for i in by_flag.get(f, [])]
        else:
            matches = [i for i in inputs.values() if i["id"] == action.dest]
        assert any(i["type"] == "File" for i in matches), action.dest


def test_every_descriptor_flag_is_a_parser_option(descriptor):
    flags = {s for a in parser_actions() for s in a.option_strings}
    for inp in descriptor["inputs"]:
        for flag in (
            [inp["command-line-flag"]]
            if "command-line-flag" in inp
            else [c for c in inp.get("value-choices", []) if str(c).startswith("-")]
        ):
            if flag.startswith("-v") and set(flag[1:]) == {"v"}:
                flag = "-v"  # -vv, -vvv: the counted -v
            assert flag in flags, (inp["id"], flag)


# -- bosh exec simulate: three invocations, the exact command lines -------------------------

DEFAULTS = (
    "--merge-contrasts --min-experiments 15 --term-threshold 0.001 --roi-radius 10.0 "
    "--roi-dilation-mm 6.0 "
    "--brain-mask brain --n-iters {n} --voxel-thresh 0.001 --cluster-alpha 0.05 "
    "--min-cluster-size 50 --random-seed 20260101 --csale-null probabilistic "
    "--subsamples 0 --subsample-size 0.8"
)
MKDA_DEFAULTS = " --mkda-radius 6.0 --prior 0.5 --fdr-q 0.01"

SIMULATIONS = [
    pytest.param(
        {"input_dir": "/data/in", "output_dir": "/data/out", "analysis_level": "group"},
        "csale-app /data/in /data/out group --analyses ale csale macm "
        + DEFAULTS.format(n=10000)
        + MKDA_DEFAULTS
        + " --device auto --batch-size auto --dask-timeout 20",
        id="defaults",
    ),
    pytest.param(
        {
            "input_dir": "/data/in",
            "output_dir": "/data/out",
            "analysis_level": "group",
            "analyses": ["csale"],
            "roi": "/data/roi.nii.gz",
            "database": "/data/brainmap",
            "n_iters": 2000,
            "work_dir": "/scratch/w",
            "nprocs": 4,
            "quiet": True,
        },
        "csale-app /data/in /data/out group --analyses csale --database /data/brainmap "
        + DEFAULTS.format(n=2000).replace("--roi-radius", "--roi /data/roi.nii.gz --roi-radius")
        + MKDA_DEFAULTS
        + " --device auto --nprocs 4 --batch-size auto --dask-timeout 20 --work-dir /scratch/w"
        " --quiet",
        id="roi-file-database-workdir",
    ),
    pytest.param(
        {
            "input_dir": "in",
            "output_dir": "out",
            "analysis_level": "group",
            "studyset_label": ["nback", "flanker"],
            "roi_builtin": "cerebellum",
            "merge_contrasts": "--no-merge-contrasts",
            "macm_seed": "each-cluster",
            "device": "cuda",
            "gpu_id": 1,
            "batch_size": "64",
            "verbose": "-vv",
            "overwrite": True,
        },
        "csale-app in out group --studyset-label nback flanker --analyses ale csale macm "
        + DEFAULTS.format(n=10000)
        .replace("--merge-contrasts", "--no-merge-contrasts")
        .replace("--roi-radius", "--roi cerebellum --roi-radius")
        + " --macm-seed each-cluster"
        + MKDA_DEFAULTS
        + " --device cuda --gpu-id 1 --batch-size 64 --dask-timeout 20 --overwrite -vv",
        id="builtin-roi-gpu",
    ),
]


@pytest.mark.parametrize("invocation, expected", SIMULATIONS)
def test_simulate_command_line(invocation, expected, tmp_path):
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps(invocation))
    out = bosh()(["exec", "simulate", "-i", str(inv), str(DESCRIPTOR)])
    assert out.shell_command.split() == expected.split()
    from csale_app.cli.parser import build_parser

    build_parser().parse_args(shlex.split(out.shell_command)[1:])  # no usage error


def test_roi_file_and_builtin_are_exclusive(tmp_path):
    inv = tmp_path / "inv.json"
    inv.write_text(
        json.dumps(
            {
                "input_dir": "i",
                "output_dir": "o",
                "analysis_level": "group",
                "roi": "r.nii.gz",
                "roi_builtin": "cerebellum",
            }
        )
    )
    with pytest.raises(Exception):  # noqa: B017 - bosh raises its own exception classes
        bosh()(["exec", "simulate", "-i", str(inv), str(DESCRIPTOR)])


# -- bosh exec launch --no-container: an absolute output folder outside the launch folder ---


def test_bosh_launch_absolute_output_folder(descriptor, tmp_path, monkeypatch, pain_json):
    case = descriptor["tests"][0]
    invocation = dict(case["invocation"])
    assert invocation["analyses"] == ["ale"] and invocation["n_iters"] <= 100

    launch = tmp_path / "launch"
    elsewhere = tmp_path / "elsewhere"
    launch.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(launch)
    in_dir = launch / invocation["input_dir"]  # relative, as the descriptor's test case
    in_dir.mkdir()
    shutil.copyfile(pain_json, in_dir / "pain.json")
    out_dir = elsewhere / "derivatives"  # absolute, outside the launch folder
    out_dir.mkdir()  # File inputs exist before a launch (a container mounts only those)
    invocation["output_dir"] = str(out_dir)
    # bosh runs the command through the shell: put this interpreter's csale-app first.
    monkeypatch.setenv(
        "PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if shutil.which("csale-app") is None:
        pytest.skip("csale-app console script not installed")
    inv = tmp_path / "invocation.json"
    inv.write_text(json.dumps(invocation))

    out = bosh()(["exec", "launch", "--no-container", str(DESCRIPTOR), str(inv)])

    assert out.exit_code == case["assertions"]["exit-code"] == 0, out.stderr[-3000:]
    assert out.missing_files == [], [str(f) for f in out.missing_files]
    found = {f.boutiques_name: Path(f.file_name) for f in out.output_files}
    required = [o["id"] for o in descriptor["output-files"] if not o.get("optional")]
    for name in required + [e["id"] for e in case["assertions"]["output-files"]]:
        assert name in found, name
        assert found[name].resolve().is_relative_to(out_dir.resolve()), (name, found[name])
    description = json.loads((out_dir / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["CodeURL"]
    assert list((out_dir / "studyset-pain").glob("studyset-pain_*_meta-ale_stat-z_statmap.nii.gz"))
    assert not any(launch.glob("studyset-*"))  # nothing written into the launch folder
    assert (in_dir / "pain.json").read_bytes() == Path(pain_json).read_bytes()
