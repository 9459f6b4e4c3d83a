"""Run settings: every option defined once, as a field of one immutable record.

Each field's metadata says how the option reaches the user (flags, help, group, how a
command-line token is parsed) and what it does to results (``role``):

- ``result``: changes what is computed; goes into the reuse digest and every sidecar.
- ``input``: a path whose *file bytes* feed results (the digest hashes the content, not the
  path, so a replaced ROI file is never mistaken for the old one).
- ``runtime``: where or how fast the run goes (threads, device, verbosity); never changes a
  number in the outputs.

The parser (:mod:`csale_app.cli.parser`), the digest and the Boutiques test are all derived
from :func:`options`; a test fails when a field has no role.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields

DEFAULT_SEED = 20260101
MAX_SEED = 2**64 - 1  # the counter-based RNG keys on an unsigned 64-bit integer
#: What runs when --analyses is not given; mkdachi2 (Neurosynth's statistics) is asked for by
#: name, and runs in every MACM anyway.
DEFAULT_ANALYSES = ("ale", "csale", "macm")
ANALYSES = DEFAULT_ANALYSES + ("mkdachi2",)
ROLES = ("result", "input", "runtime")


class OptionValueError(ValueError):
    """A command-line token that is not a valid value (the parser turns it into exit 64)."""


# ---- value parsers (one per kind of option value) ------------------------------------------
def _int(text: str, lo: int, hi: int | None, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise OptionValueError(f"expected {what}, got {text!r}") from None
    if value < lo or (hi is not None and value > hi):
        raise OptionValueError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1, None, "a positive integer")


def nonneg_int(text: str) -> int:
    return _int(text, 0, None, "a non-negative integer")


def seed_value(text: str) -> int:
    return _int(text, 0, MAX_SEED, f"an integer from 0 to 2**64 - 1 ({MAX_SEED})")


def _float(text: str, ok, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionValueError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise OptionValueError(f"expected {what}, got {text!r}")
    return value


def probability(text: str) -> float:
    return _float(text, lambda v: 0 < v < 1, "a number in (0, 1)")


def subsample_size(text: str) -> int | float:
    """A count of experiments (an integer >= 2) or a fraction of the studyset (in (0, 1))."""
    token = str(text).strip()
    what = "a count of experiments >= 2 (e.g. 25) or a fraction in (0, 1) (e.g. 0.2)"
    if token.isdigit():
        return _int(token, 2, None, what)
    return _float(token, lambda v: 0 < v < 1, what)


def share(text: str) -> float:
    return _float(text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def positive_float(text: str) -> float:
    return _float(text, lambda v: v > 0, "a positive number")


def nonneg_float(text: str) -> float:
    return _float(text, lambda v: v >= 0, "a number >= 0")


def coords(text: str) -> tuple[float, float, float]:
    try:
        xyz = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise OptionValueError(f"expected X,Y,Z in mm, got {text!r}") from None
    if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
        raise OptionValueError(f"expected X,Y,Z in mm, got {text!r}")
    return xyz  # type: ignore[return-value]


def batch_size(text: str) -> str:
    return text if text == "auto" else str(positive_int(text))


#: Transports a Dask scheduler listens on (``inproc`` is in-process only: not a cluster).
DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


def dask_address(text: str) -> str:
    """``[SCHEME://]HOST:PORT`` of a Dask scheduler, normalised to ``SCHEME://HOST:PORT``
    (``tcp`` when no scheme is given). Checked here, before anything starts, so that a typo
    is a usage error (exit 64) instead of a client that cannot be built."""
    raw = str(text).strip()
    what = (
        f"expected a Dask scheduler address SCHEME://HOST:PORT (e.g. tcp://10.0.0.5:8786; "
        f"a scheduler file goes to --dask-scheduler-file), got {text!r}"
    )
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "tcp", raw
    if scheme.lower() not in DASK_SCHEMES:
        raise OptionValueError(f"{what}: scheme must be one of {', '.join(DASK_SCHEMES)}")
    if rest.startswith("["):  # [IPv6]:port
        host, close, port = rest[1:].partition("]")
        if not close or not port.startswith(":"):
            raise OptionValueError(what)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise OptionValueError(what) from None
        host, port = f"[{host}]", port[1:]
    else:
        host, colon, port = rest.rpartition(":")
        if not colon or not _HOSTNAME.match(host):
            raise OptionValueError(what)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionValueError(f"{what}: the port must be a number from 1 to 65535")
    return f"{scheme.lower()}://{host}:{int(port)}"


def option(
    default,
    *,
    role: str,
    help: str,
    group: str,
    flags: tuple[str, ...] = (),
    parse=None,
    choices=None,
    nargs=None,
    metavar=None,
    action=None,
    cli: bool = True,
):
    """A settings field with everything the parser and the digest need to know about it."""
    assert role in ROLES, role
    meta = dict(
        role=role,
        help=help,
        group=group,
        flags=flags,
        parse=parse,
        choices=choices,
        nargs=nargs,
        metavar=metavar,
        action=action,
        cli=cli,
    )
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults (settings are immutable)")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # selection
    analyses: tuple[str, ...] = option(
        DEFAULT_ANALYSES,
        role="result",
        group="selection",
        nargs="+",
        choices=ANALYSES,
        help="analyses to run [ale csale macm]; mkdachi2 = Neurosynth's uniformity and "
        "association tests of the studyset against the rest of the database",
    )
    studyset_labels: tuple[str, ...] = option(
        (),
        role="runtime",
        group="selection",
        flags=("--studyset-label",),
        nargs="+",
        metavar="L",
        help="run only these studysets (labels = BIDS-safe file stems); the "
        "reference database stays every studyset in INPUT_DIR",
    )
    database: str | None = option(
        None,
        role="input",
        group="selection",
        metavar="PATH",
        help="file or folder of tables used as the reference database "
        "[INPUT_DIR/database/, else every table in INPUT_DIR]",
    )
    merge_contrasts: bool = option(
        True,
        role="result",
        group="selection",
        action="boolean",
        help="merge contrasts of one study into one experiment [merge]",
    )
    min_experiments: int = option(
        15,
        role="result",
        group="selection",
        parse=positive_int,
        metavar="N",
        help="skip studysets/MACM seeds with fewer experiments [15]",
    )
    terms: tuple[str, ...] = option(
        (),
        role="input",
        group="selection",
        flags=("--term",),
        nargs="+",
        action="extend",
        metavar="LABEL",
        help="one studyset per term of the database's vocabulary (its "
        "studies with weight >= --term-threshold), labelled term<LABEL>; repeatable; needs "
        "a Neurosynth/NeuroQuery file set as the database",
    )
    term_threshold: float = option(
        0.001,
        role="result",
        group="selection",
        parse=positive_float,
        metavar="W",
        help="smallest term weight (tf-idf) that selects a study for --term [0.001]",
    )
    term_vocab: str | None = option(
        None,
        role="result",
        group="selection",
        metavar="NAME",
        help="feature set for --term when the database has several: its vocab (terms, "
        "LDA50) or vocab_source_type (terms_abstract_tfidf)",
    )
    # region of interest
    roi: str | None = option(
        None,
        role="input",
        group="region of interest",
        metavar="PATH|cerebellum",
        help="NIfTI mask or a built-in name (cerebellum) [INPUT_DIR/roi.nii.gz if present]",
    )
    roi_coords: tuple[tuple[float, float, float], ...] = option(
        (),
        role="result",
        group="region of interest",
        parse=coords,
        nargs="+",
        metavar="X,Y,Z",
        help="ROI as spheres around MNI coordinates",
    )
    roi_radius: float = option(
        10.0,
        role="result",
        group="region of interest",
        parse=positive_float,
        metavar="MM",
        help="sphere radius for --roi-coords [10]",
    )
    roi_dilation_mm: float = option(
        6.0,
        role="result",
        group="region of interest",
        parse=nonneg_float,
        metavar="MM",
        help="dilation of the ROI for the analysis mask [6]",
    )
    brain_mask: str = option(
        "brain",
        role="result",
        group="region of interest",
        choices=("brain", "gm"),
        help="whole-brain mask [brain]",
    )
    # statistics
    n_iters: int = option(
        10000,
        role="result",
        group="statistics",
        parse=positive_int,
        metavar="N",
        help="permutations of the null [10000]; must allow p below --voxel-thresh and "
        "--cluster-alpha",
    )
    voxel_thresh: float = option(
        0.001,
        role="result",
        group="statistics",
        parse=probability,
        metavar="P",
        help="cluster-forming p [0.001]",
    )
    cluster_alpha: float = option(
        0.05,
        role="result",
        group="statistics",
        parse=probability,
        metavar="A",
        help="cluster-level FWE alpha for thresholded maps [0.05]",
    )
    min_cluster_size: int = option(
        50,
        role="result",
        group="statistics",
        parse=nonneg_int,
        metavar="K",
        help="extent threshold in voxels (C-SALE cluster-extent maps) [50]",
    )
    kernel_fwhm: float | None = option(
        None,
        role="result",
        group="statistics",
        parse=positive_float,
        metavar="MM",
        help="fixed kernel FWHM instead of sample-size kernels",
    )
    default_sample_size: float | None = option(
        None,
        role="result",
        group="statistics",
        parse=positive_float,
        metavar="N",
        help="sample size of experiments that have none (Neurosynth, NeuroQuery; the "
        "C-SALE study used 20); counted and reported",
    )
    random_seed: int = option(
        DEFAULT_SEED,
        role="result",
        group="statistics",
        parse=seed_value,
        metavar="S",
        help=f"seed of the permutation nulls, 0 to 2**64 - 1 [{DEFAULT_SEED}]",
    )
    # C-SALE
    csale_null: str = option(
        "probabilistic",
        role="result",
        group="C-SALE",
        choices=("probabilistic", "deterministic"),
        help="null foci from the base-rate map or the reference foci [probabilistic]",
    )
    subsamples: int = option(
        0,
        role="result",
        group="C-SALE",
        parse=nonneg_int,
        metavar="N",
        help="repeat C-SALE on N random subsamples (the study: 50) [0]",
    )
    subsample_size: int | float = option(
        0.8,
        role="result",
        group="C-SALE",
        parse=subsample_size,
        metavar="N|F",
        help="experiments per subsample: a count (25) or a fraction of the studyset (0.2); "
        "must leave 2 or more and fewer than the studyset's experiments [0.8]",
    )
    # MACM
    macm_seed: str | None = option(
        None,
        role="result",
        group="MACM",
        choices=("roi", "clusters", "each-cluster"),
        help="seed of the MACM [clusters when C-SALE ran, else roi]",
    )
    macm_coverage: float | None = option(
        None,
        role="result",
        group="MACM",
        parse=share,
        metavar="F",
        help="select experiments whose --mkda-radius spheres cover more than F of an image "
        "seed (0: any overlap) [a focus in the seed]",
    )
    # MKDA chi-square (Neurosynth)
    mkda_radius: float = option(
        6.0,
        role="result",
        group="MKDA chi-square",
        parse=positive_float,
        metavar="MM",
        help="sphere radius of the binary study maps (mkdachi2, MACM coverage) [6]",
    )
    prior: float = option(
        0.5,
        role="result",
        group="MKDA chi-square",
        parse=probability,
        metavar="P",
        help="prior P(F) of the posterior probability maps [0.5]",
    )
    fdr_q: float = option(
        0.01,
        role="result",
        group="MKDA chi-square",
        parse=probability,
        metavar="Q",
        help="Benjamini-Hochberg false discovery rate of the FDR maps [0.01]",
    )
    # compute
    device: str = option(
        "auto",
        role="runtime",
        group="compute",
        choices=("auto", "cpu", "cuda"),
        help="compute device [auto]",
    )
    gpu_id: int | None = option(
        None,
        role="runtime",
        group="compute",
        parse=nonneg_int,
        metavar="ID",
        help="CUDA device index",
    )
    nprocs: int | None = option(
        None,
        role="runtime",
        group="compute",
        parse=positive_int,
        metavar="N",
        flags=("--nprocs", "--n-cpus", "--nthreads"),
        help="CPU threads [all cores]; results do not depend on it",
    )
    mem_gb: float | None = option(
        None,
        role="runtime",
        group="compute",
        parse=positive_float,
        metavar="GB",
        flags=("--mem",),
        help="memory limit in GB (caps GPU batch size)",
    )
    batch_size: str = option(
        "auto",
        role="runtime",
        group="compute",
        parse=batch_size,
        metavar="auto|N",
        help="permutations per GPU batch: auto or N [auto]",
    )
    dask_scheduler: str | None = option(
        None,
        role="runtime",
        group="compute",
        parse=dask_address,
        metavar="ADDRESS",
        help="run permutation chunks, studysets and MACM seeds on this Dask cluster "
        "(tcp://host:8786; needs the 'distributed' extra); results are identical",
    )
    dask_scheduler_file: str | None = option(
        None,
        role="runtime",
        group="compute",
        metavar="PATH",
        help="the same, with the scheduler's address read from the JSON file that 'dask "
        "scheduler --scheduler-file PATH' or dask-jobqueue writes (waits up to "
        "--dask-timeout for it to appear); not with --dask-scheduler",
    )
    dask_timeout: float = option(
        20.0,
        role="runtime",
        group="compute",
        parse=positive_float,
        metavar="S",
        help="seconds to wait for the Dask scheduler (and its file) before exit 69 [20]",
    )
    work_dir: str | None = option(
        None,
        role="runtime",
        group="compute",
        flags=("-w", "--work-dir"),
        metavar="PATH",
        help="folder for checkpoints (resume a killed run) [OUTPUT_DIR/.csale_work]",
    )
    # output
    authors: tuple[str, ...] = option(
        (),
        role="runtime",
        group="output",
        nargs="+",
        metavar="NAME",
        help="authors of the derivative dataset (dataset_description.json Authors; kept "
        "from an earlier run when not given) [none]",
    )
    overwrite: bool = option(
        False,
        role="runtime",
        group="output",
        action="store_true",
        help="replace results of other inputs or settings in OUTPUT_DIR",
    )
    verbose: int = option(
        0,
        role="runtime",
        group="output",
        flags=("-v", "--verbose"),
        action="count",
        help="more log output (-v info, -vv debug)",
    )
    quiet: bool = option(
        False, role="runtime", group="output", action="store_true", help="no progress output"
    )
    # not on the command line
    chunk_size: int = option(
        250,
        role="runtime",
        group="internal",
        cli=False,
        help="permutations per checkpoint (and between stop checks)",
    )

    def result_params(self) -> dict:
        """Every result-changing setting and input path (as given), for sidecars."""
        d = asdict(self)
        return {f.name: d[f.name] for f in fields(self) if f.metadata["role"] != "runtime"}

    def digest(self, *parts: str) -> str:
        """Digest of the result-changing settings and ``parts`` (content hashes of every
        input file, the package version). Input *paths* are left out on purpose: their
        bytes are in ``parts``."""
        d = asdict(self)
        params = {f.name: d[f.name] for f in fields(self) if f.metadata["role"] == "result"}
        payload = json.dumps([params, *parts], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: How option names are shown: as command-line flags or as Python API keywords.
STYLES = ("cli", "api")


def option_name(name: str, style: str = "cli") -> str:
    """How the user spelled option ``name`` (a Settings field): ``--voxel-thresh`` on the
    command line, ``voxel_thresh=`` in the Python API. Messages are built with this, never
    by rewriting one style into the other."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    meta = next(f.metadata for f in fields(Settings) if f.name == name)
    if style == "api":
        return f"{name}="
    long = [f for f in meta["flags"] if f.startswith("--")]
    return long[0] if long else f"--{name.replace('_', '-')}"


def options() -> tuple:
    """The settings fields, in definition order (parser groups follow this order)."""
    return fields(Settings)
