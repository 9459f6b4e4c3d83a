"""boutiques.json: valid (bosh validate), mirrors the CLI parser, and runs (bosh exec launch)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from csale_app.cli import parser as cli_parser
from csale_app.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTOR = ROOT / "boutiques.json"

# Parser "type" callables and the Boutiques input they map to: (type, integer).
INT_TYPES = {cli_parser._positive_int, cli_parser._nonneg_int}
FLOAT_TYPES = {cli_parser._probability, cli_parser._positive_float, cli_parser._nonneg_float,
               float}
STRING_TYPES = {None, str, cli_parser._coords, cli_parser._batch_size}
PATH_TYPES = {Path}


@pytest.fixture(scope="module")
def descriptor() -> dict:
    return json.loads(DESCRIPTOR.read_text())


@pytest.fixture(scope="module")
def inputs(descriptor) -> dict[str, dict]:
    return {inp["id"]: inp for inp in descriptor["inputs"]}


def cli_actions() -> list[argparse.Action]:
    """Every argument of the parser except --help and --version."""
    return [a for a in build_parser()._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def bosh():
    boutiques = pytest.importorskip("boutiques")
    return boutiques.bosh


# -- (a) the descriptor is valid ------------------------------------------------------------

def test_bosh_validate():
    bosh()(["validate", str(DESCRIPTOR)])  # raises DescriptorValidationError when invalid


def test_descriptor_metadata(descriptor):
    import tomllib

    from csale_app import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert descriptor["schema-version"] == "0.5"
    assert descriptor["name"] == "csale-app"
    assert descriptor["tool-version"] == project["version"] == __version__
    assert descriptor["container-image"] == {
        "type": "docker", "image": f"csale-app:{project['version']}", "entrypoint": True}
    assert descriptor["command-line"].split()[:4] == [
        "csale-app", "[INPUT_DIR]", "[OUTPUT_DIR]", "[ANALYSIS_LEVEL]"]
    codes = {e["code"] for e in descriptor["error-codes"]}
    assert codes == {0, 1, 18, 64, 65, 66, 73}
    from csale_app import errors

    assert {errors.EXIT_OK, errors.EXIT_FAILURE, errors.EXIT_EMPTY_SELECTION, errors.EXIT_USAGE,
            errors.EXIT_DATA, errors.EXIT_NO_INPUT, errors.EXIT_CANT_CREATE} == codes
    assert descriptor["suggested-resources"]["cpu-cores"] == 2
    assert "gpu" in descriptor["custom"]
    for out in descriptor["output-files"]:
        assert out["path-template"].startswith("[OUTPUT_DIR]/")


# -- (b) the descriptor mirrors build_parser() ----------------------------------------------

def test_every_cli_argument_is_an_input_and_vice_versa(inputs):
    dests = {a.dest for a in cli_actions()}
    assert set(inputs) == dests, (
        f"only in the parser: {sorted(dests - set(inputs))}; "
        f"only in boutiques.json: {sorted(set(inputs) - dests)}")


def test_every_value_key_is_in_the_command_line(descriptor):
    cmd = descriptor["command-line"]
    for inp in descriptor["inputs"]:
        assert inp["value-key"] == f"[{inp['id'].upper()}]"
        assert cmd.count(inp["value-key"]) == 1, inp["id"]


def _expected_default(action: argparse.Action):
    """The parser default as a Boutiques default-value (None = no default-value).

    argparse default None, an empty list (nargs="+" with default []), False (store_true) and
    0 (the counted -v) all mean "not on the command line", i.e. no default-value.
    """
    if action.dest == "nprocs":
        # --nprocs defaults to os.cpu_count() on the machine that parses the arguments, so the
        # descriptor must not pin a number (that would force the build machine's core count
        # onto every run); it documents "[all cores]" and leaves the input out by default.
        assert action.default == (os.cpu_count() or 1)
        return None
    if isinstance(action, argparse.BooleanOptionalAction):
        return action.option_strings[0] if action.default else action.option_strings[1]
    if action.default in (None, [], False) or isinstance(action, argparse._CountAction):
        return None
    return action.default


@pytest.mark.parametrize("action", cli_actions(), ids=lambda a: a.dest)
def test_input_matches_argument(action, inputs):
    inp = inputs[action.dest]
    positional = not action.option_strings

    # optional / required
    assert inp["optional"] is (not positional and not action.required), action.dest

    # flag
    if positional:
        assert "command-line-flag" not in inp
    elif isinstance(action, argparse.BooleanOptionalAction):
        # --merge-contrasts/--no-merge-contrasts: one String input, the two flags as choices.
        assert "command-line-flag" not in inp and inp["type"] == "String"
        assert inp["value-choices"] == action.option_strings
    elif isinstance(action, argparse._CountAction):
        # -v/--verbose (counted): one String input whose choices are -v, -vv, -vvv.
        assert "command-line-flag" not in inp and inp["type"] == "String"
        assert inp["value-choices"] == ["-v", "-vv", "-vvv"]
        assert all(build_parser().parse_args(["i", "o", "group", c]).verbose == len(c) - 1
                   for c in inp["value-choices"])
    else:
        assert inp["command-line-flag"] in action.option_strings
        assert inp["command-line-flag"].startswith("--")  # the long form

    # default
    expected = _expected_default(action)
    if expected is None:
        assert "default-value" not in inp or inp["default-value"] in (False, []), action.dest
    else:
        assert inp.get("default-value") == expected, action.dest
        assert type(inp["default-value"]) is type(expected), action.dest

    # type
    if isinstance(action, argparse._StoreTrueAction):
        assert inp["type"] == "Flag"
    elif isinstance(action, (argparse.BooleanOptionalAction, argparse._CountAction)):
        pass  # checked above
    elif action.type in INT_TYPES:
        assert inp["type"] == "Number" and inp.get("integer") is True, action.dest
        assert inp["minimum"] == (1 if action.type is cli_parser._positive_int else 0)
    elif action.type in FLOAT_TYPES:
        assert inp["type"] == "Number" and not inp.get("integer", False), action.dest
        if action.type is cli_parser._probability:
            assert (inp["minimum"], inp["maximum"]) == (0, 1)
            assert inp["exclusive-minimum"] and inp["exclusive-maximum"]
    elif action.type in PATH_TYPES:
        # Existing inputs are File; folders the app creates (output, work dir) are String.
        assert inp["type"] == ("String" if action.dest in ("output_dir", "work_dir")
                               else "File"), action.dest
    else:
        assert action.type in STRING_TYPES, (action.dest, action.type)
        assert inp["type"] == "String", action.dest

    # list
    assert inp.get("list", False) is (action.nargs == "+"), action.dest

    # choices
    if action.choices is not None:
        assert inp["value-choices"] == list(action.choices), action.dest


def test_simulated_default_command_parses_to_parser_defaults(tmp_path, inputs, capsys):
    """bosh's command line with every default filled in parses to the parser's defaults."""
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps({"input_dir": "in", "output_dir": "out",
                               "analysis_level": "group"}))
    out = bosh()(["exec", "simulate", "-i", str(inv), str(DESCRIPTOR)])
    argv = shlex.split(out.shell_command)
    assert argv[0] == "csale-app"
    p = build_parser()
    simulated = vars(p.parse_args(argv[1:]))
    plain = vars(p.parse_args(["in", "out", "group"]))
    assert simulated == plain


def test_simulated_non_default_command_parses(tmp_path):
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps({
        "input_dir": "in", "output_dir": "out", "analysis_level": "group",
        "studyset_label": ["pain", "nback"], "analyses": ["ale", "csale"],
        "merge_contrasts": "--no-merge-contrasts", "roi_coords": ["0,52,26", "40,-20,30"],
        "n_iters": 200, "voxel_thresh": 0.005, "kernel_fwhm": 8.5, "macm_seed": "each-cluster",
        "device": "cpu", "nprocs": 3, "mem_gb": 4, "batch_size": "64", "work_dir": "w",
        "overwrite": True, "verbose": "-vv", "quiet": True}))
    out = bosh()(["exec", "simulate", "-i", str(inv), str(DESCRIPTOR)])
    args = build_parser().parse_args(shlex.split(out.shell_command)[1:])
    assert args.studyset_label == ["pain", "nback"]
    assert args.analyses == ["ale", "csale"]
    assert args.merge_contrasts is False
    assert args.roi_coords == [(0.0, 52.0, 26.0), (40.0, -20.0, 30.0)]
    assert (args.n_iters, args.voxel_thresh, args.kernel_fwhm) == (200, 0.005, 8.5)
    assert (args.macm_seed, args.device, args.nprocs, args.mem_gb) == ("each-cluster", "cpu",
                                                                       3, 4.0)
    assert (args.batch_size, str(args.work_dir)) == ("64", "w")
    assert (args.overwrite, args.verbose, args.quiet) == (True, 2, True)


# -- (c) bosh exec launch --no-container on a small real input ------------------------------

def test_bosh_launch_descriptor_test_case(descriptor, tmp_path, monkeypatch, pain_json):
    """Run the descriptor's own `tests` block: pain (21 experiments), ALE, 50 iterations."""
    case = descriptor["tests"][0]
    invocation = case["invocation"]
    assert invocation["analyses"] == ["ale"] and invocation["n_iters"] <= 100

    # The invocation's paths are relative to the launch folder: make the input there.
    monkeypatch.chdir(tmp_path)
    in_dir = tmp_path / invocation["input_dir"]
    in_dir.mkdir()
    shutil.copyfile(pain_json, in_dir / "pain.json")
    # bosh runs the command through the shell: put this interpreter's csale-app first.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}"
                               f"{os.environ.get('PATH', '')}")
    if shutil.which("csale-app") is None:
        pytest.skip("csale-app console script not installed")
    inv = tmp_path / "invocation.json"
    inv.write_text(json.dumps(invocation))

    out = bosh()(["exec", "launch", "--no-container", str(DESCRIPTOR), str(inv)])

    assert out.exit_code == case["assertions"]["exit-code"] == 0, out.stderr[-3000:]
    assert out.missing_files == [], [str(f) for f in out.missing_files]
    found = {f.boutiques_name for f in out.output_files}
    for expected in case["assertions"]["output-files"]:
        assert expected["id"] in found, expected["id"]

    out_dir = tmp_path / invocation["output_dir"]
    description = json.loads((out_dir / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert (out_dir / "report.html").is_file()
    assert (out_dir / "studyset-pain").is_dir()
    assert list((out_dir / "studyset-pain").glob("studyset-pain_*_meta-ale_stat-z_statmap.nii.gz"))
    assert (in_dir / "pain.json").read_bytes() == Path(pain_json).read_bytes()  # input untouched
