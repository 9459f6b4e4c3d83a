"""Checks that an OUTPUT_DIR is a valid BIDS derivative dataset: the pinned official
validator (bids-validator-deno, the ``test`` extra) reports no error and only the warnings
README lists, and every result file is named by BIDS's rule with the pybids config's
entities (the validator skips studyset-*/: .bidsignore, since BIDS has no rule for it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from csale_app import names
from csale_app.outputs.bids import pybids_config_path
from csale_app.outputs.dataset import KNOWN_WARNINGS


def validator() -> str:
    exe = Path(sys.executable).with_name("bids-validator-deno")
    found = str(exe) if exe.exists() else shutil.which("bids-validator-deno")
    assert found, "bids-validator-deno is missing: pip install -e '.[test]'"
    return found


def validate(folder: Path) -> list[dict]:
    """The validator's issues for ``folder`` (errors and warnings)."""
    proc = subprocess.run(
        [validator(), "--format", "json", str(folder)], capture_output=True, text=True, timeout=300
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return json.loads(proc.stdout)["issues"]["issues"]


def errors(issues: list[dict]) -> list[tuple[str, str]]:
    return [(i["code"], i.get("location", "")) for i in issues if i["severity"] == "error"]


def config_entities() -> set[str]:
    config = json.loads(pybids_config_path().read_text())
    return {e["name"] for e in config["entities"]} - {"suffix", "extension"}


def misnamed(folder: Path) -> list[str]:
    """Result files (not hidden) that break BIDS's naming rule or use an entity the pybids
    config does not know."""
    known = config_entities()
    bad = []
    for p in sorted(Path(folder).glob("studyset-*/**/*")):
        if p.is_dir() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        keys = set(re.findall(r"(?:^|_)([a-z]+)-", p.name))
        if not names.RESULT_NAME.match(p.name) or not keys <= known:
            bad.append(str(p.relative_to(folder)))
    return bad


def assert_valid_bids(folder: Path, allowed_warnings=tuple(KNOWN_WARNINGS)) -> list[dict]:
    issues = validate(folder)
    assert not errors(issues), errors(issues)[:20]
    warned = {i["code"] for i in issues if i["severity"] == "warning"}
    assert warned <= set(allowed_warnings), warned - set(allowed_warnings)
    assert not misnamed(folder), misnamed(folder)[:20]
    assert list(Path(folder).glob("studyset-*")), "no studyset folder was checked"
    return issues
