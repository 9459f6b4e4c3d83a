"""BIDS-derivatives writer: maps with JSON sidecars, tables, dataset_description.json.

Only this package (with ``io`` and ``report``) touches the disk. Every file goes through
``atomic.write_atomic``; a studyset's results are assembled in a staging folder and moved
into place in one rename, so a killed run never leaves a half-written file under a final
name.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import shutil
import socket
import tempfile
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..errors import (
    WRITE_ERRNOS,
    OutputError,
    display_path,
    output_error,
    write_cause,
    write_errors,
)
from ..kernels.plan import Grid
from .atomic import public_mode, write_atomic, write_json

from .. import names

PROVENANCE = ".csale_provenance.json"
#: Staging folders are ``OUTPUT_DIR/.csale_staging-studyset-<S>-XXXX``; they are hidden and
#: deliberately not ``.staging-studyset-*``, so a run started for other studysets of a job
#: array (``--studyset-label``) never removes the staging folder of a sibling run.
STAGING_PREFIX = ".csale_staging-"
STAGING_MARKER = ".csale_staging"
#: One lock file per studyset being written: ``OUTPUT_DIR/.csale_lock-studyset-<S>``.
LOCK_PREFIX = ".csale_lock-studyset-"
LOG = logging.getLogger(__name__)


def pybids_config_path() -> Path:
    return Path(str(resources.files("csale_app.outputs") / "pybids_config.json"))


def write_dataset_description(output_dir: Path, authors=()) -> None:
    """dataset_description.json, README.md, .bidsignore and the pybids config: see
    :mod:`csale_app.outputs.dataset`."""
    from .dataset import write_dataset_files

    write_dataset_files(output_dir, authors)


def write_map(
    path: Path, values: np.ndarray, grid: Grid, affine: np.ndarray, sidecar: dict
) -> Path:
    """A map over mask voxels as a float32 NIfTI (zeros outside the mask) + JSON sidecar."""
    vol = np.zeros(grid.shape, dtype=np.float32)
    vol[grid.mask] = np.asarray(values, dtype=np.float32)
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    write_atomic(path, lambda p: nib.save(img, str(p)))
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
    return path


def write_mask(path: Path, mask: np.ndarray, affine: np.ndarray, sidecar: dict) -> Path:
    img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), affine)
    img.header.set_xyzt_units("mm")
    write_atomic(path, lambda p: nib.save(img, str(p)))
    write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
    return path


def write_table(path: Path, df: pd.DataFrame, sidecar: dict | None = None) -> Path:
    """A TSV and its JSON sidecar: ``sidecar`` plus a description of every column not
    already described in it (every table has a sidecar, also without ``sidecar``)."""
    from .columns import describe_table

    write_atomic(path, lambda p: df.to_csv(p, sep="\t", index=False, na_rep="n/a"))
    side = dict(sidecar or {})
    side.update({k: v for k, v in describe_table(path.name, df).items() if k not in side})
    write_json(path.with_name(path.name[: -len(".tsv")] + ".json"), side)
    return path


class StudysetOutput:
    """Staging folder for one studyset; ``commit`` moves it to OUTPUT_DIR/studyset-<S>."""

    def __init__(self, output_dir: Path, label: str):
        self.final = Path(output_dir) / f"studyset-{label}"
        self.label = label
        remove_stale_staging(output_dir, label)
        with write_errors(output_dir, "cannot create a staging folder"):
            self.staging = Path(
                tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}studyset-{label}-", dir=output_dir)
            )
        try:
            public_mode(self.staging, directory=True)
            # write_atomic re-creates missing parent folders, so a staging folder removed by
            # another run would silently refill with only the files written after that; the
            # marker tells ``commit`` the folder is the one made here.
            (self.staging / STAGING_MARKER).write_text(f"{os.getpid()}\n")
        except OSError as exc:
            self.discard()
            if exc.errno in WRITE_ERRNOS:
                raise output_error(self.staging, exc) from None
            raise

    def prefix(self, macm: str | None = None) -> str:
        return names.prefix(self.label, macm)

    def folder(self, macm: str | None = None) -> Path:
        d = self.staging / f"macm-{macm}" if macm else self.staging
        d.mkdir(parents=True, exist_ok=True)
        return d

    def map_path(self, meta: str, stat_part: str, macm: str | None = None) -> Path:
        return self.folder(macm) / names.map_filename(self.label, meta, stat_part, macm)

    def table_path(self, name: str, macm: str | None = None) -> Path:
        return self.folder(macm) / names.table_filename(self.label, name, macm)

    def commit(self, provenance: dict) -> None:
        marker = self.staging / STAGING_MARKER
        if not marker.is_file():
            raise OutputError(
                f"{self.staging}: the staging folder was removed while this run "
                "wrote to it (another csale-app run on the same OUTPUT_DIR and "
                "studyset?); nothing was moved to "
                f"{self.final.name}; run again"
            )
        write_json(self.staging / PROVENANCE, provenance)
        old = None
        try:
            marker.unlink()
            if self.final.exists():
                old = self.final.with_name(f".old-{self.final.name}-{os.getpid()}")
                os.replace(self.final, old)
            os.replace(self.staging, self.final)
        except OSError as exc:
            if old is not None and not self.final.exists():
                os.replace(old, self.final)  # put the previous results back
            if exc.errno in WRITE_ERRNOS:
                raise output_error(self.final, exc, "cannot move the results into place") from None
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def remove_stale_staging(output_dir: Path, label: str) -> None:
    """Remove leftovers of killed runs for this studyset only (staging, half-swapped old).

    Labels are alphanumeric, so ``<label>-*`` never matches another studyset's folders.
    """
    output_dir = Path(output_dir)
    for pattern in (f"{STAGING_PREFIX}studyset-{label}-*", f".old-studyset-{label}-*"):
        for stale in output_dir.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)


def read_provenance(studyset_dir: Path) -> dict | None:
    f = Path(studyset_dir) / PROVENANCE
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def prepare_output_dir(output_dir: Path, labels=None) -> "OutputLock | None":
    """Create OUTPUT_DIR and check that it takes a file (else OutputError, exit 73).

    With ``labels`` (the studysets this run will write), also take their locks and return
    the held :class:`OutputLock` (release it at the end of the run; ``release_all_locks``
    is the safety net the CLI calls).
    """
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".csale_write_test_{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{display_path(output_dir)}: cannot create the output folder ({write_cause(exc)})"
        ) from None
    if labels is None:
        return None
    return OutputLock(output_dir, labels).acquire()


# ---------------------------------------------------------------------------- the lock

_HELD: list["OutputLock"] = []
#: Lock files this process holds: path -> [fd, users] (a run may take the same lock from
#: the CLI and from the pipeline; the second taker shares it).
_FDS: dict[str, list[int]] = {}


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _read_holder(fd: int) -> tuple[int, str] | None:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").split()
        return int(text[0]), text[1]
    except (OSError, ValueError, IndexError):
        return None


class OutputLock:
    """Locks of the studysets a run writes: ``OUTPUT_DIR/.csale_lock-studyset-<S>`` holds
    ``<pid> <host>`` and an exclusive ``flock`` while the run lives.

    A second run writing one of the same studysets into the same OUTPUT_DIR gets
    OutputError (exit 73) at once: "OUTPUT_DIR is in use by pid N on HOST". Runs of other
    studysets (a job array with ``--studyset-label``) do not block each other. A lock left
    by a killed run (no kernel lock held any more; where ``flock`` is not supported, a
    dead pid on this host) is taken over with a log line.

    Use as a context manager, or ``acquire()`` / ``release()``.
    """

    def __init__(self, output_dir: Path, labels):
        self.output_dir = Path(output_dir)
        self.labels = sorted(set(labels))
        self._fds: dict[str, int] = {}

    def path(self, label: str) -> Path:
        return self.output_dir / f"{LOCK_PREFIX}{label}"

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def acquire(self) -> "OutputLock":
        try:
            for label in self.labels:
                key = str(self.path(label))
                if key in _FDS:
                    _FDS[key][1] += 1
                else:
                    _FDS[key] = [self._lock_one(label), 1]
                self._fds[label] = _FDS[key][0]
        except BaseException:
            self.release()
            raise
        _HELD.append(self)
        return self

    def release(self) -> None:
        for label, fd in list(self._fds.items()):
            path = self.path(label)
            entry = _FDS.get(str(path))
            if entry is not None and entry[0] == fd:
                entry[1] -= 1
                if entry[1] > 0:
                    continue
                del _FDS[str(path)]
            try:
                if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                    os.unlink(path)
            except OSError:
                pass
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        if self in _HELD:
            _HELD.remove(self)

    def _in_use(self, label: str, holder) -> OutputError:
        who = f"pid {holder[0]} on {holder[1]}" if holder else "another run"
        return OutputError(
            f"{display_path(self.output_dir)}: OUTPUT_DIR is in use by {who} (it writes "
            f"studyset '{label}'); wait for that run to end, or write other studysets with "
            f"--studyset-label. If no such run exists, delete {display_path(self.path(label))}"
        )

    def _lock_one(self, label: str) -> int:
        import fcntl

        path = self.path(label)
        host = socket.gethostname()
        for _ in range(50):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OutputError(
                        f"{display_path(path)}: the lock file is a symbolic link; remove it"
                    ) from None
                raise output_error(path, exc, "cannot create the lock file") from None
            kernel_lock = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise self._in_use(label, holder) from None
            except OSError:  # ENOLCK / EOPNOTSUPP: no kernel locks on this file system
                kernel_lock = False
            try:  # the file may have been removed (released) between open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            holder = _read_holder(fd)
            if holder is not None and holder != (os.getpid(), host):
                pid, where = holder
                if not kernel_lock and (where != host or _pid_alive(pid)):
                    os.close(fd)
                    raise self._in_use(label, holder)
                LOG.info(
                    "%s: taking over the lock of studyset '%s' left by pid %d on %s "
                    "(that run is gone)",
                    display_path(self.output_dir),
                    label,
                    pid,
                    where,
                )
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {host}\n".encode(), 0)
            except OSError as exc:
                os.close(fd)
                raise output_error(path, exc, "cannot write the lock file") from None
            return fd
        raise OutputError(f"{display_path(path)}: cannot take the lock (it keeps changing)")


def release_all_locks() -> None:
    """Release every lock this process holds (the CLI calls it when a run ends)."""
    for lock in list(_HELD):
        lock.release()


atexit.register(release_all_locks)
