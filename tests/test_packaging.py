"""Dockerfile / Singularity.def / .dockerignore: the packaging rules of SPEC §7, checked as text."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def final_stage(dockerfile) -> list[tuple[str, str]]:
    """Instructions of the last stage (what the image is made of)."""
    starts = [i for i, (k, _) in enumerate(dockerfile) if k == "FROM"]
    return dockerfile[starts[-1]:]


def _env(stage) -> dict[str, str]:
    env = {}
    for key, args in stage:
        if key == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def singularity() -> str:
    return (ROOT / "Singularity.def").read_text()


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^%(\w+)[^\n]*\n", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_stage_from_debian_bookworm_slim(dockerfile):
    froms = [args.split()[0] for k, args in dockerfile if k == "FROM"]
    assert froms and all(f == "debian:bookworm-slim" for f in froms), froms


def test_non_root_user(final_stage):
    users = [args for k, args in final_stage if k == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(k == "RUN" and "useradd" in a and "--uid 1000" in a for k, a in final_stage)


def test_entrypoint_and_cmd(final_stage):
    entry = [json.loads(a) for k, a in final_stage if k == "ENTRYPOINT"]
    assert entry[-1] == ["csale-app"]
    cmd = [json.loads(a) for k, a in final_stage if k == "CMD"]
    assert cmd[-1] == ["--help"]


def test_environment(final_stage):
    env = _env(final_stage)
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    for var in ("NUMBA_CACHE_DIR", "CUPY_CACHE_DIR", "MPLCONFIGDIR", "HOME"):
        assert env[var].startswith("/tmp"), var
    # The pipeline writes GeneratedBy.Container from this variable.
    assert env["CSALE_CONTAINER"] == "csale-app:${VERSION}"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_oci_labels_and_version_arg(dockerfile, final_stage):
    labels = " ".join(a for k, a in final_stage if k == "LABEL")
    for key in ("title", "description", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert any(k == "ARG" and a.startswith("VERSION=") for k, a in dockerfile)
    assert ("ARG", "VERSION") in final_stage  # re-declared so the final stage can use it
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ("ARG", f"VERSION={version}") in dockerfile


def test_installs_the_cuda_extra_from_the_build_context(dockerfile):
    runs = " ".join(a for k, a in dockerfile if k == "RUN")
    assert re.search(r"pip install [^&]*\"\.\[cuda\]\"", runs)
    assert "python3 -m venv /opt/venv" in runs
    assert any(k == "COPY" and "--from=" in a and "/opt/venv" in a for k, a in dockerfile)


def test_no_build_tools_in_the_final_image(final_stage):
    runs = " ".join(a for k, a in final_stage if k == "RUN")
    for tool in ("build-essential", "gcc", "g++", "python3-dev", "python3-pip", "git"):
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", runs), tool
    assert "rm -rf /var/lib/apt/lists/*" in runs


def test_one_cuda_major():
    """Every GPU wheel is CUDA 12 (cupy-cuda12x[ctk] + numba-cuda[cu12]); nothing CUDA 13."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cuda = project["optional-dependencies"]["cuda"]
    names = [re.split(r"[<>=!~ ;]", req)[0] for req in cuda]
    assert "cupy-cuda12x[ctk]" in names
    assert "numba-cuda[cu12]" in names
    text = (ROOT / "Dockerfile").read_text() + " ".join(cuda)
    majors = set(re.findall(r"cuda(\d+)x|cu(\d+)\b|cuda-toolkit==?(\d+)", text))
    found = {int(m) for group in majors for m in group if m}
    assert found == {12}, found


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for pattern in (".venv", ".git", "demo_*", "**/__pycache__"):
        assert pattern in ignored, pattern
    assert not {"csale_app", "pyproject.toml", "README.md"} & ignored


def test_singularity_def(singularity):
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)", singularity, flags=re.M))
    assert header["Bootstrap"] in ("docker", "docker-daemon")
    assert header["From"].startswith("csale-app:")
    sec = _sections(singularity)
    assert re.search(r'^\s*exec csale-app "\$@"\s*$', sec["runscript"], flags=re.M)
    assert "csale-app --version" in sec["test"]
    assert sec["help"].strip()
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.version"):
        assert key in sec["labels"]
    env = sec["environment"]
    for var in ("NUMBA_CACHE_DIR=/tmp/", "CUPY_CACHE_DIR=/tmp/", "MPLCONFIGDIR=/tmp/",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility"):
        assert var in env, var
