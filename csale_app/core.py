"""The in-memory core that the Python API and the BIDS-App pipeline both run.

``build_context(settings, database, roi)`` -> :class:`~csale_app.context.RunContext` (brain
mask, ROI, reference database, device; no folders), ``prepare_studyset`` -> one
:class:`~csale_app.io.studyset.Studyset` checked against the run's rules, ``analyse`` ->
its in-memory results (:func:`csale_app.stages.run_analyses`). ``Estimator.fit`` is these
three calls; the pipeline adds only what is about folders (discovery, the database rule,
locks, reuse, staging, the report).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._version import __version__
from .context import Database, RunContext, StudysetJob, defaulted_count
from .records import StudysetSummary
from .errors import UsageError
from .io.database import load_database as read_database
from .io.digest import array_digest, file_digest
from .io.experiments import Experiments, restrict_to_mask
from .io.roi import dilate, load_roi, voxel_size_mm
from .io.studyset import Studyset, in_memory, load_studyset, read_source
from .io.templates import load_brain_mask
from .io.terms import TermStudyset
from .kernels.backend_spec import BackendSpec
from .kernels.device import make_backend
from .kernels.plan import build_grid
from .settings import Settings, option_name
from .stages import run_analyses
from .stats.subsamples import subsample_count
from .validate import memory_problem

LOG = logging.getLogger(__name__)
#: Fewer experiments than this give unreliable ALE (Eickhoff et al. 2016): warn.
RELIABLE_EXPERIMENTS = 20
#: GPU batches are large; checkpoints every 4,096 permutations are frequent enough.
GPU_CHUNK = 4096
#: Analyses that compare a studyset with the reference database.
DATABASE_ANALYSES = {"csale", "macm", "mkdachi2"}


@dataclass(frozen=True)
class DatabaseSpec:
    """Where the reference database comes from: paths (files, folders, Neurosynth file
    sets) or in-memory studysets, and how the report names it."""

    sources: tuple
    description: str


class Warnings:
    """A run's warnings: each logged once and kept for the report (and MetaResult)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)
        LOG.warning(message)


def needs_database(settings: Settings) -> bool:
    """Whether the run reads a reference database (its analyses, or a term's studies)."""
    return bool(settings.terms) or bool(DATABASE_ANALYSES & set(settings.analyses))


def note_defaulted(
    exps: Experiments, what: str, default: float | None, warn, style: str = "cli"
) -> None:
    """A warning naming how many experiments got the default sample size."""
    n = defaulted_count(exps)
    if n:
        warn(
            f"{what}: {n} of {exps.n_experiments} experiments have no sample size and "
            f"were given {option_name('default_sample_size', style)}"
            f"{'' if style == 'api' else ' '}{default:g}"
        )


def reference_database(
    settings: Settings, spec: DatabaseSpec, affine: np.ndarray, shape, warn, style: str = "cli"
) -> Database:
    """Read the reference database (an experiment listed in several sources counts once;
    repeated foci within one experiment are kept, as NiMARE keeps them)."""
    items, names, digests = [], [], []
    for src in spec.sources:
        if in_memory(src):
            read = read_source(src)
            items.append(read.foci)
            names.append(read.description)
            digests.append(read.digest)
        else:
            items.append(Path(src))
            names.append(str(src))
            digests.append(file_digest(Path(src)))
    exps = read_database(
        items,
        affine,
        shape,
        merge_contrasts=settings.merge_contrasts,
        kernel_fwhm=settings.kernel_fwhm,
        default_sample_size=settings.default_sample_size,
    )
    if exps.foci.attrs.get("refuse_outside"):  # a file set: UNKNOWN spaces counted
        for w in exps.foci.attrs.get("warnings", []):
            warn(w)
    LOG.info(
        "reference database (%s): %d experiments, %d foci from %d source(s)",
        spec.description,
        exps.n_experiments,
        exps.n_foci,
        len(items),
    )
    note_defaulted(
        exps, f"reference database ({spec.description})", settings.default_sample_size, warn, style
    )
    digest = hashlib.sha256("".join(digests).encode()).hexdigest()
    return Database(exps, tuple(names), spec.description, digest, tuple(digests))


def build_context(
    settings: Settings,
    database: DatabaseSpec | None,
    roi: str | None,
    *,
    work_root: Path | None = None,
    executor=None,
    warn=None,
    style: str = "cli",
) -> RunContext:
    """Masks, ROI, reference database and device: everything the analyses share.

    ``roi``: a NIfTI path or a built-in name (``settings.roi_coords`` makes a sphere);
    ``work_root``: where checkpoints go (None: none are kept); ``warn``: collects warnings
    (:class:`Warnings`); ``style``: how messages name options ("cli" or "api")."""
    warn = warn or Warnings()
    s = settings
    mask_img = load_brain_mask(s.brain_mask)
    affine = mask_img.affine
    brain = np.asanyarray(mask_img.dataobj) > 0
    roi_rec = load_roi(roi, s.roi_coords, s.roi_radius, mask_img, brain, None)
    if roi_rec is not None:
        for w in roi_rec.warnings:
            warn(w)
        analysis_mask = dilate(roi_rec.mask, s.roi_dilation_mm, voxel_size_mm(affine), brain)
    else:
        analysis_mask = brain
    problem = memory_problem(
        s, int(analysis_mask.sum()) if "macm" not in s.analyses else int(brain.sum()), style
    )
    if problem:
        raise UsageError(problem)
    db = (
        None
        if database is None
        else reference_database(s, database, affine, brain.shape, warn, style)
    )
    backend = make_backend(BackendSpec.from_settings(s))
    if backend.name == "cuda":
        s = replace(s, chunk_size=max(s.chunk_size, GPU_CHUNK))
    roi_part = (
        "none"
        if roi_rec is None
        else array_digest(roi_rec.mask) + "".join(file_digest(Path(f)) for f in roi_rec.files)
    )
    grid = build_grid(analysis_mask)
    return RunContext(
        settings=s,
        affine=affine,
        grid=grid,
        brain_grid=build_grid(brain) if roi_rec is not None else grid,
        roi=roi_rec,
        database=db,
        backend=backend,
        work_root=work_root,
        inputs_digest=array_digest(brain) + roi_part,
        executor=executor,
    )


def prepare_studyset(
    ctx: RunContext, source, label: str | None, warn, style: str = "cli"
) -> Studyset | None:
    """Load one studyset on the run's grid and apply the run's rules: restricted to the
    analysis mask with an ROI; None (with a warning) below ``min_experiments``."""
    s = ctx.settings
    studyset = load_studyset(
        source,
        ctx.affine,
        ctx.grid.shape,
        label=label,
        merge_contrasts=s.merge_contrasts,
        kernel_fwhm=s.kernel_fwhm,
        default_sample_size=s.default_sample_size,
        database=ctx.database.experiments if ctx.database is not None else None,
    )
    for w in studyset.warnings:
        warn(w)
    exps = studyset.experiments
    if not isinstance(studyset.source, TermStudyset):
        note_defaulted(exps, f"studyset {studyset.name}", s.default_sample_size, warn, style)
    label = studyset.label
    if ctx.roi is not None:
        exps = restrict_to_mask(exps, ctx.grid.mask)
        studyset = replace(studyset, experiments=exps)
    if exps.n_experiments < s.min_experiments:
        warn(
            f"studyset '{label}' skipped: {exps.n_experiments} experiments "
            f"{'with foci in the analysis mask ' if ctx.roi is not None else ''}"
            f"< {option_name('min_experiments', style)}"
            f"{'' if style == 'api' else ' '}{s.min_experiments}"
        )
        return None
    if exps.n_experiments < RELIABLE_EXPERIMENTS:
        warn(
            f"studyset '{label}': only {exps.n_experiments} experiments; ALE needs about "
            "20 or more to be reliable (Eickhoff et al. 2016)"
        )
    check_subsample_size(ctx, studyset, style)
    return studyset


def check_subsample_size(ctx: RunContext, studyset: Studyset, style: str = "cli") -> None:
    """Refuse (exit 64, before any output) a subsample size that leaves fewer than 2
    experiments or not fewer than the studyset's."""
    s = ctx.settings
    if s.subsamples <= 0 or "csale" not in s.analyses:
        return
    n = studyset.experiments.n_experiments
    try:
        subsample_count(s.subsample_size, n)
    except ValueError as exc:
        where = " with foci in the analysis mask" if ctx.roi is not None else ""
        given = option_name("subsample_size", style)
        given += f"{s.subsample_size:g}" if style == "api" else f" {s.subsample_size:g}"
        raise UsageError(
            f"{given}: studyset '{studyset.label}' ({n} experiments{where}): {exc}"
        ) from None


def check_self_reference(
    ctx: RunContext, studysets: list[Studyset], warn, style: str = "cli"
) -> None:
    """Warn when C-SALE (also the C-SALE of a MACM, whose experiments are selected from
    the database) would test a studyset against a base rate made of itself."""
    if not {"csale", "macm"} & set(ctx.settings.analyses) or ctx.database is None:
        return
    how = (
        "database= (a path, DataFrame or NiMARE Dataset)"
        if style == "api"
        else f"{option_name('database', style)} PATH or INPUT_DIR/database/ (database= in the "
        "Python API)"
    )
    for studyset in studysets:
        if ctx.database.is_only(studyset.digest):
            warn(
                f"studyset '{studyset.label}': the reference database is this studyset "
                "alone, so C-SALE (and a MACM's selection and C-SALE) tests it against its "
                f"own base rate and can hardly find anything specific; give a reference "
                f"database with {how}"
            )


def studyset_digest(ctx: RunContext, source_digest: str) -> str:
    """Digest of everything a studyset's results depend on (the reuse rule), from the
    digest of its source."""
    db = ctx.database.digest if ctx.database is not None else "no database"
    return ctx.settings.digest(__version__, source_digest, db, ctx.inputs_digest)


def studyset_job(ctx: RunContext, studyset: Studyset) -> StudysetJob:
    return StudysetJob(
        studyset.label,
        studyset.source,
        studyset.experiments,
        studyset_digest(ctx, studyset.digest),
        studyset.digest,
    )


def roi_summary(ctx: RunContext) -> dict | None:
    roi = ctx.roi
    if roi is None:
        return None
    return {
        "label": roi.label,
        "description": roi.description,
        "source": roi.source,
        "n_voxels": roi.n_voxels,
        "n_dropped_outside_brain": roi.n_outside_brain,
        "dilation_mm": ctx.settings.roi_dilation_mm,
        "n_analysis_voxels": ctx.grid.n_mask,
    }


def analyse(ctx: RunContext, job: StudysetJob) -> tuple[list, StudysetSummary]:
    """Every analysis of the run for one studyset, in memory: (outputs, summary)."""
    t0 = time.perf_counter()
    outputs, summary = run_analyses(ctx, job, {"roi": roi_summary(ctx)})
    return outputs, summary.with_runtime(time.perf_counter() - t0)


def device_text(ctx: RunContext) -> str:
    return ctx.backend.describe() + (
        f"; permutation chunks on the {ctx.executor.describe()} (sidecars: ComputedBy)"
        if ctx.executor is not None
        else ""
    )


def term_studysets(ctx: RunContext, terms, style: str = "cli") -> list[TermStudyset]:
    """Each term's :class:`~csale_app.io.terms.TermStudyset` from the reference database's
    Neurosynth/NeuroQuery file set (unknown term: exit 64 with the closest terms)."""
    from .io.neurosynth import find_fileset
    from .io.terms import load_features, term_studyset

    s, db = ctx.settings, ctx.database
    files = db.files if db is not None else ()
    fileset = find_fileset(files[0]) if len(files) == 1 and Path(files[0]).is_dir() else None
    if fileset is None:
        where = (
            "database= (a Neurosynth or NeuroQuery folder)"
            if style == "api"
            else f"({option_name('database', style)} FOLDER or INPUT_DIR/database/)"
        )
        raise UsageError(
            f"{'term=' if style == 'api' else option_name('terms')} "
            f"needs a Neurosynth or NeuroQuery file set as the reference "
            f"database {where}; the database is "
            f"{db.source if db is not None else 'not given'}"
        )
    features = load_features(fileset, s.term_vocab)
    out = []
    for term in terms:
        found = term_studyset(features, term, s.term_threshold, db.digest)
        LOG.info(
            "term studyset '%s': %d studies with weight >= %g",
            found.label,
            len(found.study_ids),
            s.term_threshold,
        )
        out.append(found)
    return out
