"""Dockerfile / Singularity.def / lock / .dockerignore: the packaging rules of SPEC §7 and
issue 15, checked as text (fast; the image itself is checked by scripts/container_check.sh)."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    return dockerfile[starts[-1] :]


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


VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "csale_app" / "_version.py").read_text())[1]
LOCK = ROOT / "requirements" / "lock-cuda12.txt"
BUILD_LOCK = ROOT / "requirements" / "lock-build.txt"


def _lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, [sha256, ...]) of a pip-compile/uv lock file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)\s+(.*)$", line)
        assert m, f"{path.name}: not an exact pin with hashes: {line[:80]}"
        name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
        out[name] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3)))
    return out


def test_environment(final_stage):
    env = _env(final_stage)
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["HOME"] == "/tmp"
    # Caches: chosen per user at run time by /opt/csale/bin/csale-app (first on PATH), never a
    # fixed folder shared by every user of a host.
    for var in ("NUMBA_CACHE_DIR", "MPLCONFIGDIR", "CUPY_CACHE_DIR"):
        assert var not in env, var
    assert env["PATH"].startswith("/opt/csale/bin:/opt/venv/bin:")
    # The pipeline writes GeneratedBy.Container's tag from this variable.
    assert env["CSALE_CONTAINER"] == "csale-app:${VERSION}"
    assert any(
        k == "COPY"
        and a.split()[-1] == "/opt/csale/bin/csale-app"
        and a.split()[-2] == "container/csale-app.sh"
        for k, a in final_stage
    )


def test_oci_labels_and_version_arg(dockerfile, final_stage):
    labels = " ".join(a for k, a in final_stage if k == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert "pypi.org" not in labels  # no source URL that does not exist
    assert any(k == "ARG" and a.startswith("VERSION=") for k, a in dockerfile)
    assert ("ARG", "VERSION") in final_stage  # re-declared so the final stage can use it
    assert ("ARG", f"VERSION={VERSION}") in dockerfile


def test_locked_install_before_the_code(dockerfile):
    """Dependencies from the hashed lock, in layers before `COPY csale_app`; the package last."""
    keys = [(k, a) for k, a in dockerfile]
    i_lock = next(i for i, (k, a) in enumerate(keys) if k == "COPY" and "lock-cuda12.txt" in a)
    i_deps = next(
        i for i, (k, a) in enumerate(keys) if k == "RUN" and "-r requirements/lock-cuda12.txt" in a
    )
    i_code = next(i for i, (k, a) in enumerate(keys) if k == "COPY" and "csale_app" in a)
    i_pkg = next(
        i
        for i, (k, a) in enumerate(keys)
        if k == "RUN" and re.search(r"pip install [^&]*--no-deps[^&]* \.(\s|$)", a)
    )
    assert i_lock < i_deps < i_code < i_pkg
    deps = keys[i_deps][1]
    for cmd in re.findall(r"pip install [^&]*", deps):
        assert "--require-hashes" in cmd and "--no-deps" in cmd, cmd
    assert "-r requirements/lock-build.txt" in deps
    assert "python3 -m venv /opt/venv" in " ".join(a for k, a in dockerfile if k == "RUN")
    assert any(k == "COPY" and "--from=" in a and "/opt/venv" in a for k, a in dockerfile)
    # Nothing resolved at build time outside the lock.
    assert not re.search(r"pip install [^&]*\.\[", " ".join(a for k, a in dockerfile))


def test_apt_cleaned_in_every_stage(dockerfile):
    for key, args in dockerfile:
        if key == "RUN" and "apt-get install" in args:
            assert "--no-install-recommends" in args
            assert "apt-get clean" in args and "rm -rf /var/lib/apt/lists/*" in args


def test_no_build_tools_in_the_final_image(final_stage):
    runs = " ".join(a for k, a in final_stage if k == "RUN")
    for tool in ("build-essential", "gcc", "g++", "python3-dev", "python3-pip", "git"):
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", runs), tool


def test_kernels_compiled_into_the_image(final_stage):
    """A tiny run of each analysis at build time fills /opt/csale/numba_cache (read-only at
    run time; the wrapper copies it into the per-user cache) for both CPU targets."""
    runs = " ".join(a for k, a in final_stage if k == "RUN")
    assert "NUMBA_CACHE_DIR=/opt/csale/numba_cache" in runs
    assert "MPLCONFIGDIR=/opt/csale/matplotlib" in runs
    for target in ("x86-64-v4", "x86-64-v3", "generic", "/opt/csale/cpu-targets"):
        assert target in runs, target
    for analysis in ("ale", "csale", "macm"):
        assert re.search(rf"--analyses [a-z ]*{analysis}", runs), analysis
    assert "/opt/csale/build-id" in runs
    # the warm-up runs before USER: the cache belongs to root and is only read later
    i_run = max(i for i, (k, a) in enumerate(final_stage) if k == "RUN" and "numba_cache" in a)
    i_user = max(i for i, (k, _) in enumerate(final_stage) if k == "USER")
    assert i_run < i_user


# -- the lock ---------------------------------------------------------------------------------


def test_lock_pins_every_dependency_with_hashes():
    from packaging.requirements import Requirement

    lock = _lock(LOCK)
    assert len(lock) > 30
    for name, (version, hashes) in {**lock, **_lock(BUILD_LOCK)}.items():
        assert hashes, f"{name}=={version} has no hash"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["cuda"]:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in lock, f"{name} is not in the lock"
        assert req.specifier.contains(lock[name][0], prereleases=True), (text, lock[name][0])
    build = _lock(BUILD_LOCK)
    assert {"setuptools", "wheel"} <= set(build)
    from packaging.version import Version

    assert Version(build["setuptools"][0]) >= Version("68")


def test_gpu_wheels_numba_cuda_only_cuda_12():
    """No CuPy (nothing imports it); numba-cuda[cu12] brings what numba.cuda needs: the CUDA
    runtime, NVRTC, nvJitLink and NVVM (nvcc wheel), all CUDA 12."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["cuda"] == [
        r for r in project["optional-dependencies"]["cuda"] if r.startswith("numba-cuda[cu12]")
    ]
    lock = _lock(LOCK)
    assert not [n for n in lock if n.startswith("cupy")]
    for name in (
        "numba-cuda",
        "cuda-bindings",
        "nvidia-cuda-runtime-cu12",
        "nvidia-cuda-nvrtc-cu12",
        "nvidia-nvjitlink-cu12",
        "nvidia-cuda-nvcc-cu12",
    ):
        assert name in lock, name
    assert lock["cuda-bindings"][0].startswith("12.")
    nvidia = [n for n in lock if n.startswith("nvidia-")]
    assert nvidia and all(n.endswith("-cu12") for n in nvidia), nvidia
    text = (ROOT / "Dockerfile").read_text() + LOCK.read_text()
    assert not re.search(r"cu13|cuda13|cuda-toolkit==13", text)
    import csale_app

    pkg = Path(csale_app.__file__).parent
    assert not [
        p
        for p in pkg.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+cupy", p.read_text(), flags=re.M)
    ]


# -- one tag scheme: pyproject, Dockerfile, Singularity.def, boutiques.json, README ----------


def test_versions_and_tags_agree(dockerfile, singularity):
    from csale_app import __version__

    tag = f"csale-app:{VERSION}"
    assert __version__ == VERSION
    assert ("ARG", f"VERSION={VERSION}") in dockerfile
    docker_text = (ROOT / "Dockerfile").read_text()
    assert f"container-build {tag} -- --build-arg VERSION={VERSION}" in docker_text
    assert f"-t {tag} " in docker_text
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)", singularity, flags=re.M))
    assert header == {"Bootstrap": "docker-archive", "From": f"csale-app-{VERSION}.tar"}
    assert f"podman save --format docker-archive -o csale-app-{VERSION}.tar {tag}" in singularity
    sec = _sections(singularity)
    assert re.search(
        rf"org\.opencontainers\.image\.version\s+{re.escape(VERSION)}\s*$",
        sec["labels"],
        flags=re.M,
    )
    assert f"export CSALE_CONTAINER={tag}" in sec["environment"]
    descriptor = json.loads((ROOT / "boutiques.json").read_text())
    assert descriptor["tool-version"] == VERSION
    assert descriptor["container-image"]["image"] == tag
    readme = (ROOT / "README.md").read_text()
    assert tag in readme
    # Every csale-app image reference anywhere in these files uses this version.
    for name, text in (
        ("Dockerfile", docker_text),
        ("Singularity.def", singularity),
        ("README.md", readme),
    ):
        for ref in re.findall(r"csale-app[:\-](\d+\.\d+\.\d+)", text):
            assert ref == VERSION, (name, ref)
        assert "csale-app:latest" not in text, name
    # Dependencies pinned in pyproject agree with the lock.
    lock = _lock(LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        if "==" in req:
            name, version = req.split("==")
            assert lock[re.sub(r"[-_.]+", "-", name).lower()][0] == version, req


def test_dockerignore_keeps_the_context_small():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".venv", ".git", "demo_*", "**/__pycache__"):
        assert pattern in ignored, pattern
    assert not {"csale_app", "pyproject.toml", "README.md", "requirements", "container"} & ignored


def test_singularity_def(singularity):
    sec = _sections(singularity)
    assert re.search(r'^\s*exec csale-app "\$@"\s*$', sec["runscript"], flags=re.M)
    # %test: --version and a tiny analysis whose outputs it checks.
    assert "csale-app --version" in sec["test"]
    assert re.search(r"csale-app \S+ \S+ group .*--n-iters \d+", sec["test"])
    assert "dataset_description.json" in sec["test"]
    assert sec["help"].strip()
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.version"):
        assert key in sec["labels"]
    env = sec["environment"]
    assert "export PATH=/opt/csale/bin:/opt/venv/bin:$PATH" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env
    for var in ("NUMBA_CACHE_DIR", "MPLCONFIGDIR", "NUMBA_CPU_NAME"):  # set by the wrapper
        assert f"export {var}" not in env, var


def test_singularity_test_section_runs(singularity, tmp_path):
    """The %test body as Apptainer would run it (sh, set -e), with this environment's
    interpreter for the image's /opt/venv/bin/python: the tiny analysis must pass."""
    body = _sections(singularity)["test"].replace("/opt/venv/bin/python", sys.executable)
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.run(["sh", "-c", body], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "meta-ale_stat-z_statmap.nii.gz" in proc.stdout
    assert not list(tmp_path.iterdir())  # it cleans up after itself


# -- container/csale-app.sh: per-user caches seeded from the image ----------------------------

WRAPPER = ROOT / "container" / "csale-app.sh"


def _fake_image(tmp_path: Path) -> tuple[Path, dict]:
    """A tree with the wrapper's /opt layout; its csale-app prints the cache variables."""
    opt = tmp_path / "opt"
    (opt / "csale" / "numba_cache" / "sub").mkdir(parents=True)
    (opt / "csale" / "numba_cache" / "sub" / "k.nbi").write_text("index")
    (opt / "csale" / "matplotlib").mkdir()
    (opt / "csale" / "matplotlib" / "fontlist.json").write_text("{}")
    (opt / "csale" / "build-id").write_text("B1\n")
    app = opt / "venv" / "bin" / "csale-app"
    app.parent.mkdir(parents=True)
    app.write_text(
        '#!/bin/sh\necho "NUMBA_CACHE_DIR=$NUMBA_CACHE_DIR"\n'
        'echo "MPLCONFIGDIR=$MPLCONFIGDIR"\necho "NUMBA_CPU_NAME=$NUMBA_CPU_NAME"\n'
        'echo "ARGS=$*"\n'
    )
    app.chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp), "CSALE_IMAGE_ROOT": str(opt)}
    return tmp, env


def _run_wrapper(env: dict) -> dict[str, str]:
    out = subprocess.run(
        ["sh", str(WRAPPER), "a b", "c"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_wrapper_seeds_a_private_per_user_cache(tmp_path):
    tmp, env = _fake_image(tmp_path)
    got = _run_wrapper(env)
    cache = tmp / f"csale-cache-{os.getuid()}"
    assert got["NUMBA_CACHE_DIR"] == str(cache / "numba-B1")
    assert got["MPLCONFIGDIR"] == str(cache / "matplotlib-B1")
    assert (cache / "numba-B1" / "sub" / "k.nbi").read_text() == "index"
    assert (cache / "matplotlib-B1" / "fontlist.json").is_file()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert got["ARGS"] == "a b c"
    assert got["NUMBA_CPU_NAME"] in ("x86-64-v3", "generic")
    # second run: same folders, no copy needed
    (cache / "numba-B1" / "new.nbc").write_text("x")
    assert _run_wrapper(env) == got and (cache / "numba-B1" / "new.nbc").exists()


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


V3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave", "abm"}
V4 = V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


@pytest.mark.parametrize("listed", ["x86-64-v4 x86-64-v3 generic", "x86-64-v3 generic", "generic"])
def test_wrapper_picks_the_best_compiled_target_this_cpu_runs(tmp_path, listed):
    tmp, env = _fake_image(tmp_path)
    (Path(env["CSALE_IMAGE_ROOT"]) / "csale" / "cpu-targets").write_text(listed + "\n")
    flags = _cpu_flags()
    runs = [t for t, need in (("x86-64-v4", V4), ("x86-64-v3", V3)) if need <= flags]
    expected = next((t for t in listed.split() if t in runs), "generic")
    assert _run_wrapper(env)["NUMBA_CPU_NAME"] == expected


def test_wrapper_leaves_the_cpu_to_numba_when_asked(tmp_path):
    tmp, env = _fake_image(tmp_path)
    env.update(CSALE_CPU_TARGET="host", NUMBA_CPU_NAME="generic")
    assert _run_wrapper(env)["NUMBA_CPU_NAME"] == ""  # numba detects the host's CPU


def test_wrapper_refuses_a_cache_folder_others_can_write(tmp_path):
    tmp, env = _fake_image(tmp_path)
    shared = tmp / f"csale-cache-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)  # e.g. made by someone else on a shared /tmp
    got = _run_wrapper(env)
    used = Path(got["NUMBA_CACHE_DIR"]).parent
    assert used != shared and used.parent == tmp
    assert stat.S_IMODE(used.stat().st_mode) == 0o700
    assert (used / "numba-B1" / "sub" / "k.nbi").is_file()


def test_wrapper_respects_the_callers_settings(tmp_path):
    tmp, env = _fake_image(tmp_path)
    env.update(
        NUMBA_CACHE_DIR=str(tmp_path / "mine"),
        MPLCONFIGDIR=str(tmp_path / "mpl"),
        NUMBA_CPU_NAME="generic",
    )
    got = _run_wrapper(env)
    assert got["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")
    assert got["MPLCONFIGDIR"] == str(tmp_path / "mpl")
    assert got["NUMBA_CPU_NAME"] == "generic"
    assert not (tmp_path / "mine").exists()  # not seeded: the caller's folder, the caller's call


# -- GeneratedBy.Container: the real runtime -------------------------------------------------


def test_container_provenance(tmp_path):
    from csale_app.provenance import container_provenance

    tag = {"CSALE_CONTAINER": f"csale-app:{VERSION}"}
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    assert container_provenance({}, root) is None
    assert container_provenance(tag, root) == {"Type": "unknown", "Tag": f"csale-app:{VERSION}"}
    (root / ".dockerenv").write_text("")
    assert container_provenance(tag, root) == {"Type": "docker", "Tag": f"csale-app:{VERSION}"}
    assert container_provenance({**tag, "container": "podman"}, root) == {
        "Type": "podman",
        "Tag": f"csale-app:{VERSION}",
    }  # --read-only: no /run/.containerenv
    (root / "run" / ".containerenv").write_text(
        'engine="podman-4.3.1"\nname="x"\nimage="localhost/csale-app:0.0.9"\nrootless=0\n'
    )
    assert container_provenance(tag, root) == {"Type": "podman", "Tag": f"csale-app:{VERSION}"}
    assert container_provenance({}, root) == {"Type": "podman", "Tag": "localhost/csale-app:0.0.9"}
    sif = {
        **tag,
        "APPTAINER_CONTAINER": "/home/u/csale-app-0.1.0.sif",
        "SINGULARITY_CONTAINER": "/home/u/csale-app-0.1.0.sif",
    }
    assert container_provenance(sif, root) == {
        "Type": "apptainer",
        "Tag": f"csale-app:{VERSION}",
        "URI": "file:///home/u/csale-app-0.1.0.sif",
    }
    assert container_provenance({"SINGULARITY_CONTAINER": "/x.sif"}, root)["Type"] == "singularity"


def test_dataset_description_code_url_is_the_code_that_ran(tmp_path, monkeypatch):
    """CodeURL: the package's declared source URL if pyproject declares one, else the
    file:// URI of the installed package (never a guessed address)."""
    from importlib import metadata

    import csale_app
    from csale_app.outputs.bids import write_dataset_description

    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/c.sif")
    write_dataset_description(tmp_path)
    gen = json.loads((tmp_path / "dataset_description.json").read_text())["GeneratedBy"][0]
    declared = [
        u.split(",", 1)[1].strip()
        for u in metadata.metadata("csale-app").get_all("Project-URL") or []
    ]
    if declared:
        assert gen["CodeURL"] in declared
    else:
        assert gen["CodeURL"] == Path(csale_app.__file__).resolve().parent.as_uri()
    assert gen["Container"]["Type"] == "apptainer"
    assert "Authors" not in json.loads((tmp_path / "dataset_description.json").read_text())


def test_templates_read_without_importing_nimare():
    code = (
        "import sys; from csale_app.io.templates import load_brain_mask, load_t1, "
        "template_files; m = load_brain_mask(); t = load_t1(); "
        "assert m.shape == t.shape == (91, 109, 91); "
        "assert all(p.is_file() for p in template_files().values()); "
        "assert 'nimare' not in sys.modules, 'nimare imported'"
    )
    subprocess.run([os.sys.executable, "-c", code], check=True, cwd=ROOT)
