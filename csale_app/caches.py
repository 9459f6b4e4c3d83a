"""Per-user cache folders for numba and matplotlib, chosen before either is imported.

Numba (``@njit(cache=True)`` in csale_app and in NiMARE, compiled at import) raises
"cannot cache function ...: no locator available" when no cache folder is writable, and
matplotlib raises OSError when neither its config folder nor a temporary one can be made.
Shared nodes add a second risk: a cache folder owned by another user (``/tmp/numba_cache``
made by whoever ran first) is either not writable or, if world-writable, a place where
someone else can plant pickled code. So for each cache, in order:

1. the folder named by the environment (``NUMBA_CACHE_DIR``, ``MPLCONFIGDIR``) if it is
   usable: a writable folder that is ours or not writable by everyone;
2. with no variable set, the library's own default when it is usable (numba: next to
   the package or ``~/.cache/numba``; matplotlib: ``~/.config/matplotlib``);
3. a per-user private folder ``<tmp>/csale_app-<uid>/<name>`` (mode 0700, ours);
4. a fresh private temporary folder (``/tmp`` or ``/dev/shm``), removed at exit;
5. no cache: numba compiles every run (caching switched off); for matplotlib, which
   cannot run without a folder, step 4 is the last resort.

A fallback is logged once (``notes()``; the CLI writes them to the run log). Call
:func:`setup` before numba, NiMARE or matplotlib is imported; it is cheap (a few stats).
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

_NOTES: list[str] = []
_DONE = False


def notes() -> list[str]:
    """One line per cache that fell back (for the run log)."""
    return list(_NOTES)


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def usable(path: Path, private: bool = False) -> bool:
    """``path`` is (or can be made) a folder we can write, and is safe to load code from:
    ours, or not writable by everyone (``private``: ours and closed to others)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            return False
        mine = st.st_uid == _uid()
        if private and (
            not mine or os.lstat(path).st_mode & 0o077 or stat.S_ISLNK(os.lstat(path).st_mode)
        ):
            return False
        if not mine and st.st_mode & stat.S_IWOTH:
            return False  # another user's world-writable folder: not ours to trust
        if not os.access(path, os.W_OK | os.X_OK):
            return False
        fd, probe = tempfile.mkstemp(dir=path, prefix=".csale_probe_")
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _temp_roots() -> list[Path]:
    roots = []
    for root in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if root and Path(root) not in roots and os.path.isdir(root):
            roots.append(Path(root))
    return roots


def _fallback(name: str) -> tuple[Path | None, str]:
    """A per-user private folder, else a fresh private temporary one, else None."""
    for root in _temp_roots():
        base = root / f"csale_app-{_uid()}"
        if usable(base, private=True) and usable(base / name, private=True):
            return base / name, "a per-user private folder"
    for root in _temp_roots():
        try:
            tmp = tempfile.mkdtemp(prefix=f"csale_app-{name}-{_uid()}-", dir=root)
        except OSError:
            continue
        atexit.register(shutil.rmtree, tmp, True)
        return Path(tmp), "a temporary folder removed at exit (nothing is kept between runs)"
    return None, ""


def _xdg(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or os.path.join(os.path.expanduser("~"), default))


def _numba_default_usable() -> bool:
    """Numba's own locators: ~/.cache/numba (per user), else __pycache__ next to the
    source of every package with cached functions (csale_app, NiMARE)."""
    if usable(_xdg("XDG_CACHE_HOME", ".cache") / "numba"):
        return True
    import importlib.util

    here = Path(__file__).resolve().parent
    trees = [here / "kernels", here / "stats"]
    spec = importlib.util.find_spec("nimare")
    if spec is not None and spec.origin:
        trees += [Path(spec.origin).parent / "meta" / "cbma", Path(spec.origin).parent / "annotate"]
    return all(usable(t / "__pycache__") for t in trees)


def _matplotlib_default_usable() -> bool:
    return usable(_xdg("XDG_CONFIG_HOME", ".config") / "matplotlib") and usable(
        _xdg("XDG_CACHE_HOME", ".cache") / "matplotlib"
    )


def _disable_numba_cache() -> None:
    """No writable folder anywhere: compile without caching instead of failing."""
    from numba.core import dispatcher

    dispatcher.Dispatcher.enable_caching = lambda self: None


def _apply_numba_dir(path: Path) -> None:
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    if "numba" in sys.modules:  # already imported (tests): functions decorated later use it
        from numba.core import config

        config.CACHE_DIR = str(path)


def _setup_one(var: str, name: str, default_usable) -> None:
    given = os.environ.get(var)
    if given:
        if usable(Path(given)):
            return
        why = f"{var}={given} is not a writable folder of this user"
    else:
        if default_usable():
            return
        why = f"the default {name} cache folder is not writable"
    path, kind = _fallback(name)
    if path is not None:
        if var == "NUMBA_CACHE_DIR":
            _apply_numba_dir(path)
        else:
            os.environ[var] = str(path)
        _NOTES.append(f"{name} cache: {why}; using {kind}: {path}")
        return
    if var == "NUMBA_CACHE_DIR":
        os.environ.pop(var, None)
        _disable_numba_cache()
        _NOTES.append(
            f"{name} cache: {why} and no temporary folder can be made; compiling "
            "without a cache (slower start)"
        )
    else:
        _NOTES.append(f"{name} cache: {why} and no temporary folder can be made")


def setup(force: bool = False) -> list[str]:
    """Choose the numba and matplotlib cache folders (once per process); returns notes."""
    global _DONE
    if _DONE and not force:
        return notes()
    _DONE = True
    _NOTES.clear()
    _setup_one("NUMBA_CACHE_DIR", "numba", _numba_default_usable)
    _setup_one("MPLCONFIGDIR", "matplotlib", _matplotlib_default_usable)
    return notes()
