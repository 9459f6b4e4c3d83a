"""Hostile inputs through the command line: files that are not files, odd names, unreadable
files, huge files, deep JSON, broken ROIs.

Every case is generated here (FIFOs, sockets, device links and undecodable names cannot
live in git) beside a good studyset (NiMARE's pain dataset), run in-process through
``csale_app.cli.run.main`` and checked for: the exit code, exactly one stderr line
``csale-app: error: ...`` naming the offending file, no traceback, no results, and an
INPUT_DIR that is unchanged (every entry's type, mode, mtime and, for regular files,
content hash). Nothing here may hang: a FIFO is never opened and a device never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from csale_app.cli.run import main
from csale_app.errors import EXIT_DATA, EXIT_NO_INPUT, EXIT_OK, display_path

ERROR_PREFIX = "csale-app: error: "
ALE_FAST = [
    "--analyses",
    "ale",
    "--n-iters",
    "30",
    "--quiet",
    "--min-experiments",
    "1",
    "--nprocs",
    "1",
]
CSALE = ["--analyses", "csale", "--voxel-thresh", "0.05"]
DEEP = 50_000  # far beyond Python's recursion limit


# --------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root, links not followed, special files never opened."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = "link:" + os.readlink(p)
            else:
                digest = stat.S_IFMT(st.st_mode)
            snap[os.path.relpath(os.fsencode(p), os.fsencode(root))] = (
                digest,
                st.st_size if stat.S_ISREG(st.st_mode) else 0,
                st.st_mtime_ns,
                stat.S_IMODE(st.st_mode),
            )
    return snap


def _deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def _nimads_with_deep_metadata() -> str:
    inner = '{"a": ' * DEEP + "1" + "}" * DEEP
    return '{"id": "s", "studies": [{"id": "s1", "metadata": ' + inner + ', "analyses": []}]}'


def _nifti(path: Path, data, affine=None, dtype=None) -> Path:
    img = nib.Nifti1Image(
        np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype),
        np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine,
    )
    nib.save(img, str(path))
    return path


def _template_roi(path: Path) -> Path:
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    data = np.zeros(img.shape, np.uint8)
    data[40:50, 60:70, 40:50] = 1
    return _nifti(path, data, img.affine)


def _rgb_roi(path: Path) -> Path:
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    rgb = np.zeros(img.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    out = nib.Nifti1Image(rgb, img.affine)
    nib.save(out, str(path))
    return path


def _singular_roi(path: Path) -> Path:
    """An uncompressed .nii whose sform rows (header bytes 280-327) are all zero."""
    img = nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    img.set_qform(None, code=0)
    img.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=2)
    nib.save(img, str(path))
    raw = bytearray(path.read_bytes())
    raw[280:328] = bytes(48)
    path.write_bytes(bytes(raw))
    return path


def _nan_affine_roi(path: Path) -> Path:
    """An uncompressed .nii whose sform row x is patched to NaN (nibabel will not write
    one): bytes 280-295 of the NIfTI-1 header are srow_x."""
    data = np.ones((10, 10, 10), np.uint8)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    img.set_qform(None, code=0)
    img.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=2)
    nib.save(img, str(path))
    raw = bytearray(path.read_bytes())
    raw[280:296] = np.full(4, np.nan, dtype="<f4").tobytes()
    path.write_bytes(bytes(raw))
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return path


def _link(path: Path, target) -> Path:
    os.symlink(target, path)
    return path


def _bytes_name(folder: Path, raw: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def _parquet_folder(
    folder: Path, index_text: str | None = None, coordinates: str = "regular"
) -> Path:
    folder.mkdir()
    (folder / "studyset.json").write_text(
        index_text or json.dumps({"format": "nimare-studyset-parquet"})
    )
    target = folder / "coordinates.parquet"
    if coordinates == "fifo":
        _fifo(target)
    elif coordinates == "zero":
        _link(target, "/dev/zero")
    return folder


SLEUTH_BAD = "// Reference=MNI\n// A\n// Subjects=10\n1 2\n"


# --------------------------------------------------------------------------- the cases
# Each maker builds the hostile entry in INPUT_DIR (``inp``) or beside it (``tmp``) and
# returns (the path the message must name, extra CLI arguments).

CASES: dict[str, tuple] = {
    # ---- files that are not files (never opened, never read)
    "fifo_tsv": (lambda i, t: (_fifo(i / "x.tsv"), []), EXIT_DATA, "FIFO"),
    "fifo_txt": (lambda i, t: (_fifo(i / "x.txt"), []), EXIT_DATA, "FIFO"),
    "fifo_csv": (lambda i, t: (_fifo(i / "x.csv"), []), EXIT_DATA, "FIFO"),
    "fifo_json": (lambda i, t: (_fifo(i / "x.json"), []), EXIT_DATA, "FIFO"),
    "fifo_upper_suffix": (lambda i, t: (_fifo(i / "X.TSV"), []), EXIT_DATA, "FIFO"),
    "socket_tsv": (lambda i, t: (_socket(i / "s.tsv"), []), EXIT_DATA, "socket"),
    "socket_json": (lambda i, t: (_socket(i / "s.json"), []), EXIT_DATA, "socket"),
    "link_dev_zero": (
        lambda i, t: (_link(i / "zero.tsv", "/dev/zero"), []),
        EXIT_DATA,
        "character device",
    ),
    "link_dev_null": (
        lambda i, t: (_link(i / "null.txt", "/dev/null"), []),
        EXIT_DATA,
        "character device",
    ),
    "link_dev_urandom": (
        lambda i, t: (_link(i / "rnd.json", "/dev/urandom"), []),
        EXIT_DATA,
        "character device",
    ),
    "link_to_fifo": (
        lambda i, t: (_link(i / "pipe.csv", _fifo(t / "real_fifo")), []),
        EXIT_DATA,
        "FIFO",
    ),
    "link_to_socket": (
        lambda i, t: (_link(i / "sock.txt", _socket(t / "real.sock")), []),
        EXIT_DATA,
        "socket",
    ),
    "link_loop_self": (
        lambda i, t: (_link(i / "loop.tsv", "loop.tsv"), []),
        EXIT_NO_INPUT,
        "symbolic link loop",
    ),
    "link_loop_pair": (
        lambda i, t: (_link(i / "a.txt", _link(i / "b.tmp", "a.txt").name), []),
        EXIT_NO_INPUT,
        "symbolic link loop",
    ),
    "link_dangling": (
        lambda i, t: (_link(i / "gone.json", t / "nowhere.json"), []),
        EXIT_NO_INPUT,
        "no such file",
    ),
    "database_fifo_inside": (
        lambda i, t: ((i / "database").mkdir() or _fifo(i / "database" / "ref.tsv"), [*CSALE]),
        EXIT_DATA,
        "FIFO",
    ),
    "database_option_fifo": (
        lambda i, t: (_fifo(t / "db.tsv"), ["--database", t / "db.tsv", *CSALE]),
        EXIT_DATA,
        "FIFO",
    ),
    "database_option_loop": (
        lambda i, t: (_link(t / "db.tsv", "db.tsv"), ["--database", t / "db.tsv", *CSALE]),
        EXIT_NO_INPUT,
        "symbolic link loop|does not exist",
    ),
    "database_option_dev_zero": (
        lambda i, t: (_link(t / "db.txt", "/dev/zero"), ["--database", t / "db.txt", *CSALE]),
        EXIT_DATA,
        "character device",
    ),
    "roi_option_fifo": (
        lambda i, t: (_fifo(t / "roi.nii.gz"), ["--roi", t / "roi.nii.gz"]),
        EXIT_DATA,
        "FIFO",
    ),
    "roi_in_input_fifo": (lambda i, t: (_fifo(i / "roi.nii.gz"), []), EXIT_DATA, "FIFO"),
    "roi_option_dev_zero": (
        lambda i, t: (_link(t / "z.nii", "/dev/zero"), ["--roi", t / "z.nii"]),
        EXIT_DATA,
        "character device",
    ),
    "roi_option_link_loop": (
        lambda i, t: (_link(t / "l.nii.gz", "l.nii.gz"), ["--roi", t / "l.nii.gz"]),
        EXIT_NO_INPUT,
        "symbolic link loop|does not exist",
    ),
    "parquet_coordinates_fifo": (
        lambda i, t: (_parquet_folder(i / "pq", coordinates="fifo") / "coordinates.parquet", []),
        EXIT_DATA,
        "FIFO",
    ),
    "parquet_coordinates_dev_zero": (
        lambda i, t: (_parquet_folder(i / "pq", coordinates="zero") / "coordinates.parquet", []),
        EXIT_DATA,
        "character device",
    ),
    # ---- names
    "name_latin1_bytes": (
        lambda i, t: (_write(_bytes_name(i, b"caf\xe9.txt"), SLEUTH_BAD), []),
        EXIT_DATA,
        "not valid UTF-8",
    ),
    "name_only_invalid_bytes": (
        lambda i, t: (_write(_bytes_name(i, b"\xff\xfe.tsv"), "x"), []),
        EXIT_DATA,
        "not valid UTF-8",
    ),
    "name_invalid_bytes_parquet_folder": (
        lambda i, t: (_parquet_folder(_bytes_name(i, b"pq\xff")), []),
        EXIT_DATA,
        "folder name is not valid UTF-8",
    ),
    "name_punctuation_only": (
        lambda i, t: (_write(i / "---.tsv", "x"), []),
        EXIT_DATA,
        "no ASCII letters or digits",
    ),
    "name_cjk": (
        lambda i, t: (_write(i / "工作记忆.txt", SLEUTH_BAD), []),
        EXIT_DATA,
        "no ASCII letters or digits",
    ),
    "name_greek": (
        lambda i, t: (_write(i / "αβγ.json", "{}"), []),
        EXIT_DATA,
        "no ASCII letters or digits",
    ),
    "name_emoji": (
        lambda i, t: (_write(i / "😀.csv", "x"), []),
        EXIT_DATA,
        "no ASCII letters or digits",
    ),
    "name_spaces_only": (
        lambda i, t: (_write(i / " .tsv", "x"), []),
        EXIT_DATA,
        "no ASCII letters or digits",
    ),
    "name_with_newline": (
        lambda i, t: (_write(i / "bad\nname.txt", SLEUTH_BAD), []),
        EXIT_DATA,
        "found 2",
    ),
    "name_with_escape_sequence": (
        lambda i, t: (_write(i / "\x1b[31mred.txt", SLEUTH_BAD), []),
        EXIT_DATA,
        "found 2",
    ),
    # ---- unreadable / oversized
    "size_over_cap_table": (
        lambda i, t: (_sparse(i / "huge.tsv", 3 * 2**20), []),
        EXIT_DATA,
        "MiB limit",
    ),
    "size_over_cap_json": (
        lambda i, t: (_sparse(i / "huge.json", 3 * 2**20), []),
        EXIT_DATA,
        "MiB limit",
    ),
    "size_over_cap_roi": (
        lambda i, t: (_sparse(t / "big.nii.gz", 3 * 2**20), ["--roi", t / "big.nii.gz"]),
        EXIT_DATA,
        "MiB limit",
    ),
    # ---- deep structures
    "deep_json_list": (
        lambda i, t: (_write(i / "deep.json", _deep_json()), []),
        EXIT_DATA,
        "nested too deeply",
    ),
    "deep_json_nimads_metadata": (
        lambda i, t: (_write(i / "nimads.json", _nimads_with_deep_metadata()), []),
        EXIT_DATA,
        "nested too deeply",
    ),
    "deep_json_tsv_sidecar": (
        lambda i, t: (
            _write(i / "side.tsv", "study_id\tx\ty\tz\n") and _write(i / "side.json", _deep_json()),
            [],
        ),
        EXIT_DATA,
        "nested too deeply",
    ),
    "deep_json_parquet_index": (
        lambda i, t: (_parquet_folder(i / "pq", _deep_json()) / "studyset.json", []),
        EXIT_DATA,
        "nested too deeply",
    ),
    # ---- ROIs that are not masks
    "roi_singular_affine": (
        lambda i, t: (_singular_roi(t / "flat.nii"), ["--roi", t / "flat.nii"]),
        EXIT_DATA,
        "singular",
    ),
    "roi_nan_affine": (
        lambda i, t: (_nan_affine_roi(t / "nan.nii"), ["--roi", t / "nan.nii"]),
        EXIT_DATA,
        "not finite",
    ),
    "roi_rgb": (
        lambda i, t: (_rgb_roi(t / "rgb.nii.gz"), ["--roi", t / "rgb.nii.gz"]),
        EXIT_DATA,
        "not a scalar number type",
    ),
    "roi_complex": (
        lambda i, t: (
            _nifti(t / "cplx.nii.gz", np.ones((10, 10, 10)), dtype=np.complex64),
            ["--roi", t / "cplx.nii.gz"],
        ),
        EXIT_DATA,
        "not a scalar number type",
    ),
    "roi_text_file": (
        lambda i, t: (_write(t / "text.nii.gz", "not an image\n"), ["--roi", t / "text.nii.gz"]),
        EXIT_DATA,
        "cannot read",
    ),
    "roi_truncated_gzip": (
        lambda i, t: (_truncated(_template_roi(t / "cut.nii.gz")), ["--roi", t / "cut.nii.gz"]),
        EXIT_DATA,
        "cannot read",
    ),
    "roi_in_input_rgb": (
        lambda i, t: (_rgb_roi(i / "roi.nii.gz"), []),
        EXIT_DATA,
        "not a scalar number type",
    ),
}


def _write(path: Path, text: str) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_at_least_40_hostile_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input(case, pain_input, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CSALE_MAX_INPUT_MB", "2")
    make, code, expected = CASES[case]
    side = tmp_path / "side"
    side.mkdir()
    named, extra = make(pain_input, side)
    before = snapshot(pain_input)
    out = tmp_path / "out"

    rc = main([str(a) for a in [pain_input, out, "group", *ALE_FAST, *extra]])

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, (rc, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith(ERROR_PREFIX), lines
    assert "Traceback" not in err
    assert display_path(named) in lines[0], (display_path(named), lines[0])
    assert re.search(expected, lines[0]), lines[0]
    assert snapshot(pain_input) == before, "INPUT_DIR changed"
    assert not (out.exists() and list(out.glob("studyset-*")))


def test_unreadable_table_is_66(pain_input, tmp_path, capsys, monkeypatch):
    """chmod 000 as a normal user (root reads anyway, so the EACCES is injected here; the
    real non-root case is in test_faults.py)."""
    bad = pain_input / "secret.tsv"
    bad.write_text("study_id\tx\ty\tz\n")
    bad.chmod(0)
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if os.fspath(path) == os.fspath(bad):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    before = snapshot(pain_input)
    rc = main([str(a) for a in [pain_input, tmp_path / "out", "group", *ALE_FAST]])
    monkeypatch.undo()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == EXIT_NO_INPUT, lines
    assert len(lines) == 1 and str(bad) in lines[0] and "permission denied" in lines[0]
    assert snapshot(pain_input) == before


def test_long_names_get_capped_distinct_labels(tmp_path):
    from csale_app.io.readers import MAX_LABEL, study_label

    a = study_label(tmp_path / ("x" * 230 + "a.tsv"))
    b = study_label(tmp_path / ("x" * 230 + "b.tsv"))
    assert a != b and len(a) == len(b) == MAX_LABEL
    assert a.isalnum() and a.isascii()
    assert study_label(tmp_path / "short-name_1.tsv") == "shortname1"


def test_long_name_runs_with_a_capped_label(pain_input, tmp_path, capsys):
    """A 240-character label, beyond the file-name limit once BIDS entities are added."""
    long_name = "pain" + "x" * 236 + ".json"
    os.rename(pain_input / "pain.json", pain_input / long_name)
    before = snapshot(pain_input)
    out = tmp_path / "out"
    rc = main([str(a) for a in [pain_input, out, "group", *ALE_FAST]])
    err = capsys.readouterr().err
    assert rc == EXIT_OK, err
    assert "Traceback" not in err
    folders = list(out.glob("studyset-*"))
    assert len(folders) == 1 and len(folders[0].name) <= len("studyset-") + 64
    assert all(len(p.name) < 255 for p in out.rglob("*"))
    foci = next(folders[0].glob("*_desc-input_foci.tsv")).read_text()
    assert long_name in foci  # the original name is recorded next to the label
    assert snapshot(pain_input) == before
