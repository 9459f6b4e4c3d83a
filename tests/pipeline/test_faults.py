"""Fault injection: a full disk, a file size limit, read-only and unwritable folders (as a
non-root user), unusable caches, SIGKILL/SIGTERM at random points, two concurrent runs.

Every fault must end in one line ``csale-app: error: ...`` with the right exit code and
no traceback, leave nothing partial under a final name, and a rerun once the fault is
cleared must finish the work from the checkpoints with maps byte-identical to an
undisturbed run (the module-scoped ``reference``).

Mounting (tmpfs, read-only bind) needs root with CAP_SYS_ADMIN; where it is missing the
disk-full case falls back to RLIMIT_FSIZE and the read-only case is skipped. Tests that
need an unprivileged user drop to uid 65534 with ``setpriv``; when the interpreter is not
reachable by that user (a Python under /root), they keep only CAP_DAC_READ_SEARCH, which
lets the process read and traverse but never write, so the write faults stay real.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csale_app.cli.run import main
from csale_app.errors import EXIT_CANT_CREATE, EXIT_NO_INPUT, EXIT_OK

ERROR_PREFIX = "csale-app: error: "
ARGS = ["group", "--analyses", "ale", "--n-iters", "750", "--nprocs", "1", "--quiet"]
ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


# --------------------------------------------------------------------------- helpers


def _run(inp, out, *extra) -> int:
    return main([str(inp), str(out), *ARGS, *map(str, extra)])


def _err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _one_error_line(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    assert lines[0].startswith(ERROR_PREFIX), lines
    assert "Traceback" not in lines[0]
    return lines[0]


def _maps(folder: Path) -> dict[str, bytes]:
    return {
        p.name: np.asanyarray(nib.load(p).dataobj).tobytes()
        for p in sorted(folder.glob("*.nii.gz"))
    }


def _tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*null_values.tsv"))}


def _assert_same_as_reference(out: Path, reference: Path) -> None:
    a, b = _maps(out / "studyset-pain"), _maps(reference / "studyset-pain")
    assert a.keys() == b.keys() and len(a) > 5
    for name in a:
        assert a[name] == b[name], name
    assert _tables(out / "studyset-pain") == _tables(reference / "studyset-pain")


def _assert_nothing_partial(out: Path, finished: bool = False) -> None:
    """No temporary file anywhere, no results folder unless the run finished."""
    assert not [p for p in out.rglob("*") if ".part" in p.name], "temporary file left"
    if not finished:
        # a studyset folder appears only complete (one rename after every file is
        # written): a kill after that rename, before the report, leaves it whole
        final = out / "studyset-pain"
        assert not final.exists() or (final / ".csale_provenance.json").is_file(), (
            "partial results under the final name"
        )
    else:
        assert (out / "studyset-pain" / ".csale_provenance.json").is_file()


def _mount(*args) -> bool:
    try:
        return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pain_dir(tmp_path_factory, pain_json) -> Path:
    d = tmp_path_factory.mktemp("faults_in") / "in"
    d.mkdir()
    shutil.copy(pain_json, d / "pain.json")
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pain_dir) -> Path:
    """An undisturbed run: what every resumed run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("faults_ref") / "out"
    assert _run(pain_dir, out) == EXIT_OK
    return out


# --------------------------------------------------------------------------- disk full


def test_disk_full_then_resume(pain_dir, reference, tmp_path, capsys):
    """ENOSPC on a tiny tmpfs: exit 73 naming the file and "no space left"; nothing
    partial; the checkpoints survive; after the file system grows, the same command
    finishes with maps identical to the reference."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)):
        pytest.skip(
            "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); "
            "test_file_size_limit_then_resume covers the RLIMIT_FSIZE variant"
        )
    try:
        out = mnt / "out"
        code = _run(pain_dir, out)
        msg = _one_error_line(_err_lines(capsys))
        assert code == EXIT_CANT_CREATE, msg
        assert "no space left on the device" in msg and str(out) in msg, msg
        assert "run the same command again" in msg
        _assert_nothing_partial(out)
        assert not [p for p in out.iterdir() if "staging" in p.name]
        chunks = list((out / ".csale_work").rglob("chunk-*.npz"))
        assert chunks, "finished permutation chunks are kept for the rerun"
        assert not list(out.glob(".csale_lock*")), "the lock is released on failure"

        assert _mount("-o", "remount,size=64m", str(mnt))
        assert _run(pain_dir, out) == EXIT_OK, capsys.readouterr().err
        _assert_nothing_partial(out, finished=True)
        _assert_same_as_reference(out, reference)
    finally:
        _umount(mnt)


def test_file_size_limit_then_resume(pain_dir, reference, tmp_path, capsys):
    """EFBIG (``ulimit -f``): exit 73, "file size limit", then a clean rerun resumes."""
    out = tmp_path / "out"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN  # Python ignores SIGXFSZ
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        code = _run(pain_dir, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    msg = _one_error_line(_err_lines(capsys))
    assert code == EXIT_CANT_CREATE, msg
    assert "file size limit" in msg and str(out) in msg, msg
    _assert_nothing_partial(out)
    assert list((out / ".csale_work").rglob("chunk-*.npz"))
    assert _run(pain_dir, out) == EXIT_OK, capsys.readouterr().err
    _assert_same_as_reference(out, reference)


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("where", ["output", "work"])
def test_read_only_file_system(where, pain_dir, tmp_path, capsys):
    """EROFS even for root: a read-only bind mount as OUTPUT_DIR or as -w/--work-dir."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if not (_mount("--bind", str(ro), str(ro)) and _mount("-o", "remount,bind,ro", str(ro))):
        _umount(ro)
        pytest.skip("cannot make a read-only bind mount here (needs root)")
    try:
        if where == "output":
            out, extra, named = ro / "out", [], ro / "out"
        else:
            out, extra, named = tmp_path / "out", ["-w", ro / "work"], ro / "work"
        code = _run(pain_dir, out, *extra)
        msg = _one_error_line(_err_lines(capsys))
        assert code == EXIT_CANT_CREATE, msg
        assert "read-only file system" in msg and str(named) in msg, msg
        if where == "work":
            _assert_nothing_partial(out)
            assert not [p for p in out.iterdir() if "staging" in p.name]
    finally:
        _umount(ro)


# --------------------------------------------------------------------------- non-root


def _unprivileged_prefix() -> tuple[list[str], bool]:
    """The command prefix that runs as uid 65534, and whether it is a plain user (False:
    it keeps CAP_DAC_READ_SEARCH to reach the interpreter)."""
    if os.geteuid() != 0:
        return [], True
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed: cannot drop privileges")
    base = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = [sys.executable, "-c", "import csale_app.cli.run"]
    for prefix, plain in (
        (base, True),
        (base + ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"], False),
    ):
        try:
            ok = (
                subprocess.run(prefix + probe, capture_output=True, cwd="/", timeout=120).returncode
                == 0
            )
        except OSError:
            ok = False
        if ok:
            return prefix, plain
    pytest.skip("cannot run the interpreter as an unprivileged user here")


SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    from csale_app.cli.run import main

    cases = json.loads(sys.argv[1])
    results = {}
    for name, argv in cases:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        results[name] = [code, err.getvalue()]
    print(json.dumps(results))
""")


@pytest.fixture
def shared_dir():
    """A folder outside /tmp/pytest-of-root (0700), reachable by uid 65534."""
    d = Path(tempfile.mkdtemp(prefix="csale_faults_", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unwritable_folders_and_caches_as_a_normal_user(pain_json, shared_dir):
    """As uid 65534: an unwritable OUTPUT_DIR, work dir or logs/ folder is exit 73 naming
    it; with NUMBA_CACHE_DIR and MPLCONFIGDIR owned by root (not writable) and no
    writable HOME, a run still succeeds (private cache folder, one log line), with no
    cache noise on stderr. As a plain user a chmod-000 table is exit 66."""
    prefix, plain = _unprivileged_prefix()
    inp = shared_dir / "in"
    inp.mkdir()
    shutil.copy(pain_json, inp / "pain.json")
    locked = shared_dir / "root_owned"  # 0755 root: nobody cannot write in it
    locked.mkdir()
    open_out = shared_dir / "open"  # nobody's own folder
    open_out.mkdir()
    os.chown(open_out, NOBODY, NOBODY)
    logs_blocked = open_out / "out_logs"
    (logs_blocked / "logs").mkdir(parents=True)  # logs/ made by root: not writable
    os.chown(logs_blocked, NOBODY, NOBODY)
    for d in ("numba_cache", "matplotlib"):
        (shared_dir / d).mkdir()  # foreign-owned caches, as /tmp/numba_cache left by root
    fast = ["group", "--analyses", "ale", "--n-iters", "30", "--nprocs", "1", "--quiet"]
    cases = [
        ["output", [str(inp), str(locked / "out"), *fast]],
        ["work", [str(inp), str(open_out / "out_w"), *fast, "-w", str(locked / "work")]],
        ["logs", [str(inp), str(logs_blocked), *fast]],
        ["ok", [str(inp), str(open_out / "out_ok"), *fast]],
    ]
    if plain:
        secret = shared_dir / "in_secret"
        secret.mkdir()
        shutil.copy(pain_json, secret / "pain.json")
        (secret / "secret.tsv").write_text("study_id\tx\ty\tz\n")
        (secret / "secret.tsv").chmod(0)
        cases.append(["chmod000", [str(secret), str(open_out / "out_s"), *fast]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "NUMBA_", "MPL"))}
    env.update(
        HOME="/nonexistent",
        NUMBA_CACHE_DIR=str(shared_dir / "numba_cache"),
        MPLCONFIGDIR=str(shared_dir / "matplotlib"),
        NUMBA_NUM_THREADS="1",
    )
    proc = subprocess.run(
        prefix + [sys.executable, "-c", SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        cwd=str(shared_dir),
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == "", proc.stderr[-3000:]  # no cache warnings, nothing
    results = json.loads(proc.stdout.strip().splitlines()[-1])

    for name, named in (
        ("output", locked / "out"),
        ("work", locked / "work"),
        ("logs", logs_blocked / "logs"),
    ):
        code, err = results[name]
        lines = [line for line in err.splitlines() if line.strip()]
        msg = _one_error_line(lines)
        assert code == EXIT_CANT_CREATE, (name, msg)
        assert str(named) in msg and "permission denied" in msg.lower(), (name, msg)
    assert not (locked / "out").exists() and not (locked / "work").exists()

    code, err = results["ok"]
    assert code == EXIT_OK, err
    assert (
        "Traceback" not in err and "numba" not in err.lower() and "matplotlib" not in err.lower()
    ), err
    assert (open_out / "out_ok" / "studyset-pain").is_dir()
    log = "".join(p.read_text() for p in (open_out / "out_ok" / "logs").glob("*.log"))
    assert "numba cache: NUMBA_CACHE_DIR=" in log and "matplotlib cache:" in log, log[-2000:]
    assert not list((shared_dir / "numba_cache").iterdir())  # the foreign folder untouched

    if plain:
        code, err = results["chmod000"]
        msg = _one_error_line([line for line in err.splitlines() if line.strip()])
        assert code == EXIT_NO_INPUT, msg
        assert "secret.tsv" in msg and "permission denied" in msg


def test_no_writable_cache_anywhere_compiles_without_cache(shared_dir):
    """A --read-only container without a tmpfs: no cache folder can be made at all.
    Numba's cache=True functions (csale_app's and NiMARE's) must still import and run."""
    prefix, _ = _unprivileged_prefix()
    script = textwrap.dedent("""
        import csale_app.caches as caches
        caches._temp_roots = lambda: []          # no temporary folder either
        notes = caches.setup()
        assert any("compiling without a cache" in n for n in notes), notes
        import numpy as np
        from csale_app.stats import ale          # @njit(cache=True) at import
        import csale_app.kernels.cpu.ale         # noqa: F401
        import nimare.meta.cbma.permutation      # NiMARE's cached functions
        print("ok", notes)
    """)
    cache = shared_dir / "foreign"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "NUMBA_", "MPL"))}
    env.update(HOME="/nonexistent", NUMBA_CACHE_DIR=str(cache), MPLCONFIGDIR=str(cache))
    proc = subprocess.run(
        prefix + [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=str(shared_dir),
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok"), proc.stdout


def test_foreign_world_writable_cache_is_not_trusted(tmp_path):
    from csale_app import caches

    mine = tmp_path / "mine"
    assert caches.usable(mine)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, NOBODY, NOBODY) if os.geteuid() == 0 else None
    foreign.chmod(0o777)
    if os.geteuid() == 0:
        assert not caches.usable(foreign)  # another user's world-writable folder
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert not caches.usable(not_a_dir)


# --------------------------------------------------------------------------- signals


def _cmd(inp, out):
    return [sys.executable, "-m", "csale_app", str(inp), str(out), *ARGS]


def test_random_sigkill_and_sigterm_then_resume(pain_dir, reference, tmp_path, capsys):
    """Several runs killed at random moments (start-up, reading, permutations, writing),
    alternately by SIGKILL and SIGTERM; after each, nothing partial is under a final
    name; the final run finishes with maps and nulls identical to the reference."""
    out = tmp_path / "out"
    rng = random.Random(20261130)
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]
    for sig in signals:
        proc = subprocess.Popen(
            _cmd(pain_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        time.sleep(rng.uniform(1.0, 9.0))
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        finished = proc.returncode == 0
        assert "Traceback" not in err, err
        if sig == signal.SIGTERM and not finished:
            # 130 from the handler; -15 when it lands before the handler is installed
            assert proc.returncode in (130, -signal.SIGTERM), (proc.returncode, err)
            if proc.returncode == 130:
                assert err.strip().startswith(ERROR_PREFIX) and "interrupted" in err
        if out.exists():
            _assert_nothing_partial(out, finished=finished)
        if finished:
            break
    code = _run(pain_dir, out)
    assert code == EXIT_OK, capsys.readouterr().err
    _assert_nothing_partial(out, finished=True)
    assert not [p for p in out.iterdir() if "staging" in p.name or p.name.startswith(".old-")]
    assert not list(out.glob(".csale_lock*"))
    _assert_same_as_reference(out, reference)


# --------------------------------------------------------------------------- concurrency


def test_two_concurrent_runs(pain_dir, reference, tmp_path, capsys):
    """The second run on a busy OUTPUT_DIR exits 73 at once naming the holder; once the
    holder is killed, its stale lock is taken over with a log line and the run resumes."""
    out = tmp_path / "out"
    slow = subprocess.Popen(
        _cmd(pain_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lock = out / ".csale_lock-studyset-pain"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and slow.poll() is None and not lock.exists():
            time.sleep(0.05)
        assert slow.poll() is None and lock.exists(), "the first run never took its lock"
        t0 = time.monotonic()
        code = _run(pain_dir, out)
        took = time.monotonic() - t0
        msg = _one_error_line(_err_lines(capsys))
        assert code == EXIT_CANT_CREATE, msg
        assert f"OUTPUT_DIR is in use by pid {slow.pid} on {socket.gethostname()}" in msg, msg
        assert took < 60, took  # no analysis was started
        assert slow.poll() is None, "the first run is not disturbed"
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.communicate()
    assert lock.exists()  # a killed run leaves its lock: stale now
    assert _run(pain_dir, out, "-v") == EXIT_OK
    capsys.readouterr()
    log = "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    assert f"taking over the lock of studyset 'pain' left by pid {slow.pid}" in log
    assert not lock.exists()
    _assert_same_as_reference(out, reference)


def test_lock_is_per_studyset_and_reentrant(tmp_path):
    """Job arrays (--studyset-label) write different studysets into one OUTPUT_DIR at the
    same time; one process may take the same lock twice (CLI and pipeline)."""
    from csale_app.errors import OutputError
    from csale_app.outputs import bids

    with bids.OutputLock(tmp_path, ["a"]):
        with bids.OutputLock(tmp_path, ["a"]):  # same process: shared
            pass
        assert (tmp_path / ".csale_lock-studyset-a").exists()
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from csale_app.outputs import bids; "
                f"bids.OutputLock({str(tmp_path)!r}, sys.argv[1:]).acquire()",
                "b",
            ],
            capture_output=True,
            text=True,
        )
        assert other.returncode == 0, other.stderr  # another studyset: not blocked
        busy = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from csale_app.outputs import bids\n"
                "try:\n"
                f"    bids.OutputLock({str(tmp_path)!r}, ['a']).acquire()\n"
                "except Exception as e:\n"
                "    print(type(e).__name__, e.exit_code)",
            ],
            capture_output=True,
            text=True,
        )
        assert busy.stdout.split() == ["OutputError", "73"], busy
    assert not list(tmp_path.glob(".csale_lock*"))
    assert OutputError.exit_code == EXIT_CANT_CREATE
