"""Layer rules that see every import, also those inside functions (import-linter / grimp):
the contracts in pyproject.toml ([tool.importlinter]) hold, and no module imports the package
``__init__`` (the version comes from ``csale_app._version``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("import-linter is not installed (it is in the test extra)")
    proc = subprocess.run(
        [lint, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "0 broken" in proc.stdout


def test_nothing_imports_the_package_init():
    import grimp

    graph = grimp.build_graph("csale_app", cache_dir=None)
    importers = graph.find_modules_that_directly_import("csale_app")
    assert importers <= {"csale_app.__main__"}, sorted(importers)


def test_a_broken_contract_is_seen(tmp_path):
    """The contract check cannot pass vacuously: an import inside a function that breaks a
    layer is reported."""
    pkg = tmp_path / "layered"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "report").mkdir()
    for d in (pkg, pkg / "kernels", pkg / "report"):
        (d / "__init__.py").write_text("")
    (pkg / "kernels" / "cpu.py").write_text(
        "def f():\n    from ..report import page  # inside a function\n    return page\n"
    )
    (pkg / "report" / "page.py").write_text("X = 1\n")
    (tmp_path / "setup.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["layered"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "kernels below report"\ntype = "forbidden"\n'
        'source_modules = ["layered.kernels"]\nforbidden_modules = ["layered.report"]\n'
    )
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "setup.toml", "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr


def test_gc_freeze_only_from_the_cli_entry():
    """A library call (the Python API, report building) never freezes its caller's garbage
    collector: gc.freeze() is called only in csale_app/cli/."""
    import ast

    found = []
    for path in (ROOT / "csale_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "freeze"
                and isinstance(node.value, ast.Name)
                and node.value.id == "gc"
            ):
                found.append(path.relative_to(ROOT).as_posix())
    assert found and all(p.startswith("csale_app/cli/") for p in found), found
