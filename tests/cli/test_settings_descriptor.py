"""The Boutiques descriptor is derived from the settings definition: every CLI option is an
input with the option's flag and default (a new option cannot be forgotten there)."""

from __future__ import annotations

import json
from pathlib import Path

from csale_app.settings import options

DESCRIPTOR = Path(__file__).resolve().parents[2] / "boutiques.json"
#: Options Boutiques models differently: -v is counted (a String of "-v"/"-vv"),
#: --merge-contrasts/--no-merge-contrasts is one String input holding the flag. (--roi is
#: two inputs there, ``roi`` typed File and ``roi_builtin`` a String choice, so platforms
#: mount a NIfTI path.)
SPECIAL = {"verbose", "merge_contrasts"}


def test_every_cli_option_is_a_descriptor_input_with_the_same_flag_and_default():
    inputs = {i["id"]: i for i in json.loads(DESCRIPTOR.read_text())["inputs"]}
    for f in options():
        if not f.metadata["cli"] or f.name in SPECIAL:
            continue
        name = "studyset_label" if f.name == "studyset_labels" else f.name
        assert name in inputs, f"{f.name} is missing from boutiques.json"
        given = inputs[name]
        flags = f.metadata["flags"] or (f"--{f.name.replace('_', '-')}",)
        assert given.get("command-line-flag") in flags, f.name
        default = f.default
        if isinstance(default, tuple):
            default = list(default) or None
        if default not in (None, False) and not isinstance(default, bool):
            assert given.get("default-value") == default, f.name
    for name in SPECIAL | {"roi_builtin"}:
        assert name in inputs
    assert inputs["roi_builtin"]["command-line-flag"] == "--roi"
