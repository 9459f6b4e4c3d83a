"""Orchestration: find studysets, read them, run the analyses, write outputs. No maths here.

Rules that decide what a result means (stated in README "Methods" and the report):

- Database: the reference database is ``--database`` if given, else ``INPUT_DIR/database/``,
  else every studyset in INPUT_DIR, whatever ``--studyset-label`` selects, so it is the same
  for every studyset of a run and a job array gives the same maps as one full run.
- ROI: with an ROI, nulls run in the ROI dilated by ``--roi-dilation-mm`` within the brain
  mask; thresholded maps, cluster/peak/contribution tables are restricted to the ROI.
- Reuse: finished results are reused only when a digest of the bytes of every input file
  (studyset, database, ROI), the package version and every result-changing setting matches.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np

from . import interrupt
from ._version import __version__
from .context import Database, RunContext, StudysetJob
from .errors import (EmptySelectionError, InputNotFoundError, MissingInputError, OutputError,
                     UsageError)
from .io.digest import array_digest, file_digest
from .io.database import build_database_experiments, load_database
from .io.experiments import Experiments, build_experiments, restrict_to_mask
from .io.terms import TermStudyset, load_features, term_label, term_studyset
from .io.readers import database_sources, find_studysets, read_studyset, study_label
from .io.roi import ROI, dilate, load_roi, voxel_size_mm
from .io.workdir import DEFAULT_WORK, remove_checkpoints, report_figure_dir
from .io.templates import load_brain_mask
from .kernels.device import select_backend
from .kernels.plan import build_grid
from .outputs import bids
from .settings import Settings
from .outputs import names
from .stages import run_analyses
from .stats.subsamples import subsample_count
from .tasks import run_all
from .validate import memory_problem

LOG = logging.getLogger(__name__)
#: Fewer experiments than this give unreliable ALE (Eickhoff et al. 2016): warn.
RELIABLE_EXPERIMENTS = 20
#: GPU batches are large; checkpoints every 4,096 permutations are frequent enough.
GPU_CHUNK = 4096


class Pipeline:
    def __init__(self, settings: Settings, input_dir: Path, output_dir: Path):
        self.s = settings
        self.input_dir = None if input_dir is None else Path(input_dir)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.warnings: list[str] = []
        self._source_digests: dict[Path, str] = {}
        self.summaries: list[dict] = []
        self.reused: list[str] = []
        self.database: Database | None = None
        self.roi: ROI | None = None
        self.command_line = ""
        self.on_output_ready = lambda: None
        self.t_start = time.perf_counter()

    def source_digest(self, path: Path | TermStudyset) -> str:
        """The digest of an input file's bytes, read once per run (of a term studyset: of
        its database, features and selection rule)."""
        if isinstance(path, TermStudyset):
            return path.digest
        path = Path(path)
        if path not in self._source_digests:
            self._source_digests[path] = file_digest(path)
        return self._source_digests[path]

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
        LOG.warning(message)

    # ---- inputs -------------------------------------------------------------------------
    def check_paths(self) -> None:
        if not self.input_dir.is_dir():
            raise InputNotFoundError(
                f"{self.input_dir}: input folder does not exist or is not a folder")
        inp = self.input_dir.resolve()
        out = self.output_dir.resolve()
        if out == inp or inp in out.parents:
            raise OutputError(f"{self.output_dir}: the output folder must not be the input folder "
                              "or inside it (inputs are never written)")
        if self.s.work_dir:
            work = Path(self.s.work_dir).resolve()
            if work == inp or inp in work.parents:
                raise UsageError(f"{self.s.work_dir}: the work folder (-w/--work-dir) must not "
                                 "be the input folder or inside it (inputs are never written)")
        self.scheduler_address()

    def scheduler_address(self) -> str | None:
        """--dask-scheduler, or the address in --dask-scheduler-file (read once, before any
        work: exit 66/65 naming the file when it is missing or not a scheduler file)."""
        if not hasattr(self, "_scheduler_address"):
            from .dask_client import scheduler_address

            self._scheduler_address = scheduler_address(self.s)
        return self._scheduler_address

    def all_studysets(self) -> list[tuple[str, Path | str]]:
        """(label, file) of every studyset in INPUT_DIR, then (label, term) of every
        --term (resolved against the database by :meth:`resolve_terms`)."""
        files = find_studysets(self.input_dir)
        if not files and not self.s.terms:
            raise EmptySelectionError(f"{self.input_dir}: no coordinate tables found "
                                      "(.txt, .tsv, .csv, .json)")
        found = [(study_label(f), f) for f in files]
        taken = {lab.lower(): str(f) for lab, f in found}
        for term in self.s.terms:
            label = term_label(term)
            if label == "term":
                raise UsageError(f"--term {term!r} has no ASCII letters or digits to make a "
                                 "studyset label")
            if label.lower() in taken:
                raise UsageError(f"--term {term!r} makes studyset label {label!r}, the same "
                                 f"as {taken[label.lower()]} (labels are case-insensitive)")
            taken[label.lower()] = f"--term {term!r}"
            found.append((label, term))
        return found

    def select_studysets(self, labelled: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
        if not self.s.studyset_labels:
            return labelled
        wanted = set(self.s.studyset_labels)
        unknown = wanted - {lab for lab, _ in labelled}
        if unknown:
            raise EmptySelectionError(
                f"{self.input_dir}: no studyset labelled {', '.join(sorted(unknown))} "
                f"(found: {', '.join(lab for lab, _ in labelled) or 'none'})")
        return [(lab, f) for lab, f in labelled if lab in wanted]

    def load_experiments(self, path: Path | TermStudyset, affine, shape) -> Experiments:
        if isinstance(path, TermStudyset):  # the database's experiments of those studies
            db = self.database.experiments
            return db.subset(path.experiment_mask(db.study_ids))
        foci = read_studyset(path)
        for w in foci.attrs.get("warnings", []):
            self.warn(w)
        # a Neurosynth-size file set: the vectorized builder (same result, no loop)
        build = build_database_experiments if foci.attrs.get("refuse_outside") \
            else build_experiments
        exps = build(foci, affine, shape, merge_contrasts=self.s.merge_contrasts,
                     kernel_fwhm=self.s.kernel_fwhm,
                     default_sample_size=self.s.default_sample_size)
        for w in exps.warnings:
            self.warn(f"{path.name}: {w}")
        self.note_defaulted(exps, f"studyset {path.name}")
        return exps

    def note_defaulted(self, exps: Experiments, what: str) -> None:
        """A warning (console, log, report) naming how many experiments got
        --default-sample-size."""
        from .context import defaulted_count

        n = defaulted_count(exps)
        if n:
            self.warn(f"{what}: {n} of {exps.n_experiments} experiments have no sample size "
                      f"and were given --default-sample-size {self.s.default_sample_size:g}")

    def database_files(self, every_studyset: list[tuple[str, Path]]) -> tuple[list[Path], str]:
        """The reference database's files and where they came from (see the module
        docstring): never the run's selection."""
        if self.s.database:
            src = Path(self.s.database)
            if not src.exists():
                raise InputNotFoundError(f"{src}: --database does not exist")
            files = database_sources(src)
            source = f"the database given ({src})"
        elif (self.input_dir / "database").is_dir():
            src = self.input_dir / "database"
            files = database_sources(src)
            source = "INPUT_DIR/database/"
        else:
            src, files = self.input_dir, [f for _, f in every_studyset if isinstance(f, Path)]
            source = "every studyset in INPUT_DIR"
        if not files:
            raise MissingInputError(f"{src}: the reference database folder holds no "
                                    "coordinate tables (.txt, .tsv, .csv, .json)")
        return files, source

    def load_database(self, files: list[Path], source: str, affine, shape) -> Database:
        """Read the reference database's files (an experiment listed in several counts once)."""
        # an experiment listed in several files (same IDs and foci) counts once; repeated
        # foci within one experiment are kept, as NiMARE keeps them (io/database.py)
        db = load_database(files, affine, shape, merge_contrasts=self.s.merge_contrasts,
                           kernel_fwhm=self.s.kernel_fwhm,
                           default_sample_size=self.s.default_sample_size)
        if db.foci.attrs.get("refuse_outside"):  # a file set: UNKNOWN spaces counted
            for w in db.foci.attrs.get("warnings", []):
                self.warn(w)
        LOG.info("reference database (%s): %d experiments, %d foci from %d file(s)",
                 source, db.n_experiments, db.n_foci, len(files))
        self.note_defaulted(db, f"reference database ({source})")
        per_file = tuple(self.source_digest(f) for f in files)
        digest = hashlib.sha256("".join(per_file).encode()).hexdigest()
        return Database(db, tuple(str(f) for f in files), source, digest, per_file)

    def roi_summary(self, analysis_mask: np.ndarray) -> dict | None:
        roi = self.roi
        if roi is None:
            return None
        return {"label": roi.label, "description": roi.description, "source": roi.source,
                "n_voxels": roi.n_voxels, "n_dropped_outside_brain": roi.n_outside_brain,
                "dilation_mm": self.s.roi_dilation_mm,
                "n_analysis_voxels": int(analysis_mask.sum())}

    # ---- run ----------------------------------------------------------------------------
    def build_context(self, every: list[tuple[str, Path]],
                      database: tuple[list[Path], str] | None = None
                      ) -> tuple[RunContext, list, dict]:
        """Masks, ROI, studysets, database and device: everything before OUTPUT_DIR exists.

        ``database`` (files, source) replaces the CLI's rule (the Python API passes it)."""
        s = self.s
        studysets = self.select_studysets(every)
        mask_img = load_brain_mask(s.brain_mask)
        affine = mask_img.affine
        brain = np.asanyarray(mask_img.dataobj) > 0
        self.roi = roi = load_roi(s.roi, s.roi_coords, s.roi_radius, mask_img, brain,
                                  self.input_dir)
        if roi is not None:
            for w in roi.warnings:
                self.warn(w)
            analysis_mask = dilate(roi.mask, s.roi_dilation_mm, voxel_size_mm(affine), brain)
        else:
            analysis_mask = brain
        problem = memory_problem(s, int(analysis_mask.sum()) if "macm" not in s.analyses
                                 else int(brain.sum()))
        if problem:
            raise UsageError(problem)
        if any(isinstance(p, str) for _, p in studysets):  # terms select from the database
            files, source = database or self.database_files(every)
            self.database = self.load_database(files, source, affine, brain.shape)
            studysets = self.resolve_terms(studysets)
        loaded = []
        for label, path in studysets:
            exps = self.load_experiments(path, affine, brain.shape)
            if roi is not None:
                exps = restrict_to_mask(exps, analysis_mask)
            if exps.n_experiments < s.min_experiments:
                self.warn(f"studyset '{label}' skipped: {exps.n_experiments} experiments "
                          f"{'with foci in the analysis mask ' if roi is not None else ''}"
                          f"< --min-experiments {s.min_experiments}")
                continue
            if exps.n_experiments < RELIABLE_EXPERIMENTS:
                self.warn(f"studyset '{label}': only {exps.n_experiments} experiments; ALE "
                          "needs about 20 or more to be reliable (Eickhoff et al. 2016)")
            self.check_subsample_size(label, exps)
            loaded.append((label, path, exps))
        if not loaded:
            raise EmptySelectionError(f"{self.input_dir}: no studyset has at least "
                                      f"--min-experiments {s.min_experiments} experiments")
        if {"csale", "macm", "mkdachi2"} & set(s.analyses) and self.database is None:
            files, source = database or self.database_files(every)
            self.database = self.load_database(files, source, affine, brain.shape)
            self.check_self_reference(loaded)
        backend = select_backend(s.device, s.gpu_id, s.nprocs, s.batch_size)
        if backend.name == "cuda":
            if s.mem_gb:
                backend.mem_limit_bytes = s.mem_gb * 2**30
            self.s = s = replace(s, chunk_size=max(s.chunk_size, GPU_CHUNK))
        executor = None
        address = self.scheduler_address()
        if address:
            from .distributed import connect  # dask is imported only when asked for

            executor = connect(address, s)
        roi_part = ("none" if roi is None else
                    array_digest(roi.mask) + "".join(file_digest(Path(f)) for f in roi.files))
        ctx = RunContext(
            settings=s, affine=affine, grid=build_grid(analysis_mask),
            brain_grid=build_grid(brain) if roi is not None else None, roi=roi,
            database=self.database, backend=backend,
            work_root=Path(s.work_dir) if s.work_dir else Path(self.output_dir) / DEFAULT_WORK,
            inputs_digest=array_digest(brain) + roi_part, executor=executor)
        if ctx.brain_grid is None:
            ctx = replace(ctx, brain_grid=ctx.grid)
        return ctx, loaded, {"roi": self.roi_summary(analysis_mask)}

    def resolve_terms(self, studysets: list) -> list:
        """Replace each --term by its :class:`TermStudyset` (unknown term: exit 64 with the
        closest terms, before OUTPUT_DIR is touched)."""
        from .io.neurosynth import find_fileset

        files = self.database.files
        fileset = find_fileset(files[0]) if len(files) == 1 and Path(files[0]).is_dir() \
            else None
        if fileset is None:
            raise UsageError("--term needs a Neurosynth or NeuroQuery file set as the "
                             f"reference database (--database FOLDER or INPUT_DIR/database/); "
                             f"the database is {self.database.source}")
        features = load_features(fileset, self.s.term_vocab)
        out = []
        for label, path in studysets:
            if isinstance(path, str):
                path = term_studyset(features, path, self.s.term_threshold,
                                     self.database.digest)
                LOG.info("term studyset '%s': %d studies with weight >= %g", label,
                         len(path.study_ids), self.s.term_threshold)
            out.append((label, path))
        return out

    def check_subsample_size(self, label: str, exps: Experiments) -> None:
        """Refuse (exit 64, before OUTPUT_DIR exists) a --subsample-size that leaves fewer
        than 2 experiments or not fewer than the studyset's."""
        s = self.s
        if s.subsamples <= 0 or "csale" not in s.analyses:
            return
        try:
            subsample_count(s.subsample_size, exps.n_experiments)
        except ValueError as exc:
            where = " with foci in the analysis mask" if self.roi is not None else ""
            raise UsageError(f"--subsample-size {s.subsample_size:g}: studyset '{label}' "
                             f"({exps.n_experiments} experiments{where}): {exc}") from None

    def check_self_reference(self, loaded) -> None:
        """Warn when C-SALE (also the C-SALE of a MACM, whose experiments are selected from
        the database) would test a studyset against a base rate made of itself."""
        if not {"csale", "macm"} & set(self.s.analyses) or self.database is None:
            return
        for label, path, _ in loaded:
            if self.database.is_only(self.source_digest(path)):
                self.warn(f"studyset '{label}': the reference database is this studyset "
                          "alone, so C-SALE (and a MACM's selection and C-SALE) tests it "
                          "against its own base rate and can hardly find anything specific; "
                          "give a reference database with --database PATH or "
                          "INPUT_DIR/database/ (database= in the Python API)")

    def run(self) -> list[dict]:
        self.check_paths()
        if getattr(self, "report_process", None) is None:  # the CLI starts it earlier
            from .report.forked import start_report_process  # imports the plotting stack

            self.report_process = start_report_process(self.s.nprocs)
        every = self.all_studysets()
        ctx, loaded, extra = self.build_context(every)
        bids.prepare_output_dir(self.output_dir)
        self.on_output_ready()
        bids.write_dataset_description(self.output_dir, self.s.authors)
        reason = getattr(ctx.backend, "fallback_reason", None)
        LOG.info("compute device: %s%s", ctx.backend.describe(),
                 f"; no GPU used: {reason}" if reason else "", extra={"console": True})
        units = [partial(self.run_studyset, ctx, label, path, exps, extra)
                 for label, path, exps in loaded]
        for label, (summary, reused) in zip([lab for lab, _, _ in loaded],
                                            run_all(ctx.executor, units)):
            self.summaries.append(summary)
            if reused:
                self.reused.append(label)
        bids.write_dataset_description(self.output_dir, self.s.authors)  # with the results
        self.write_report(ctx)
        try:
            # only if empty: checkpoints are removed per analysis; the report's figures stay
            ctx.work_root.rmdir()
        except OSError:
            pass
        return self.summaries

    def report_context(self, ctx: RunContext) -> dict:
        """What the report needs beyond the files (see report/build.py)."""
        return {
            "version": __version__,
            "command_line": self.command_line,
            "settings": asdict(self.s),
            "device": ctx.backend.describe() + (
                f"; permutation chunks on the {ctx.executor.describe()} (sidecars: "
                "ComputedBy)" if ctx.executor is not None else ""),
            "runtime_s": round(time.perf_counter() - self.t_start, 1),
            "warnings": self.warnings,
            "studysets": self.summaries,
            "input_dir": str(self.input_dir),
            "output_dir": str(self.output_dir),
            "database": self.database.describe() if self.database else None,
            "roi": self.roi_summary(ctx.grid.to_volume(np.ones(ctx.grid.n_mask, bool)))
            if self.roi is not None else None,
            "reused": self.reused,
        }

    def write_report(self, ctx: RunContext) -> None:
        proc, self.report_process = getattr(self, "report_process", None), None
        if proc is None:
            from .report.build import build_report as proc_build
        else:  # the report process (report/forked.py), which imported the plotting stack
            proc_build = proc.build
        path = proc_build(self.output_dir, self.report_context(ctx),
                          figure_dir=report_figure_dir(self.output_dir))
        LOG.info("report: %s", path)

    def run_studyset(self, ctx: RunContext, label: str, path: Path, exps: Experiments,
                     extra: dict) -> tuple[dict, bool]:
        """One studyset's analyses, published in one rename: (summary, reused)."""
        interrupt.checkpoint()
        digest = studyset_digest(ctx, self.source_digest(path))
        if reusable(self.output_dir, label, digest, self.s.overwrite):
            return (bids.read_provenance(self.output_dir / f"studyset-{label}")
                    .get("summary", {"label": label}), True)
        job = StudysetJob(label, path, exps, digest, self.source_digest(path))
        t0 = time.perf_counter()
        outputs, summary = run_analyses(ctx, job, extra)
        summary["runtime_s"] = round(time.perf_counter() - t0, 2)
        write_studyset(self.output_dir, ctx, job, outputs, summary)
        remove_checkpoints(ctx.work_root, label, digest)
        return summary, False


def studyset_digest(ctx: RunContext, source_digest: str) -> str:
    """Digest of everything a studyset's results depend on (the reuse rule), from the
    digest of the studyset file's bytes."""
    db = ctx.database.digest if ctx.database is not None else "no database"
    return ctx.settings.digest(__version__, source_digest, db, ctx.inputs_digest)


def reusable(output_dir: Path, label: str, digest: str, overwrite: bool) -> bool:
    """True when OUTPUT_DIR holds this studyset's finished results for ``digest``; other
    results there are refused (exit 73) unless ``overwrite``."""
    final = Path(output_dir) / f"studyset-{label}"
    if not final.exists():
        return False
    prov = bids.read_provenance(final)
    if prov and prov.get("digest") == digest:
        LOG.info("studyset '%s': finished results with the same inputs and settings found; "
                 "reusing them", label)
        return True
    if not overwrite:
        raise OutputError(f"{final}: holds results of other inputs or settings; use "
                          "--overwrite to replace them or choose another OUTPUT_DIR")
    return False


def write_studyset(output_dir: Path, ctx: RunContext, job: StudysetJob, outputs: list,
                   summary: dict) -> None:
    """Stage every file of one studyset and publish the folder in one rename."""
    from .results import write_output

    out = bids.StudysetOutput(output_dir, job.label)
    try:
        exps = job.experiments
        bids.write_table(out.table_path(names.INPUT_FOCI), exps.foci, {
            "Description": "Parsed foci with original IDs; x/y/z as given, x_mni/y_mni/"
                           "z_mni after Talairach to MNI conversion (tal2icbm) where needed",
            "Source": str(job.path)})
        bids.write_table(out.table_path(names.EXPERIMENTS_TABLE), exps.table)
        if isinstance(job.path, TermStudyset):
            bids.write_table(out.table_path(names.TERM_STUDIES),
                             job.path.table(ctx.database.experiments.table),
                             job.path.sidecar(exps.n_experiments))
        roi = ctx.roi
        if roi is not None:
            bids.write_mask(out.folder() / names.roi_mask_filename(job.label, roi.label),
                            roi.mask, ctx.affine, {
                                "Description": roi.description, "Source": roi.source,
                                "Voxels": roi.n_voxels,
                                "VoxelsDroppedOutsideBrainMask": roi.n_outside_brain})
        for o in outputs:
            write_output(out, o)
        out.commit({"digest": job.digest, "settings": ctx.settings.result_params(),
                    "summary": summary, "version": __version__})
    except BaseException:
        out.discard()
        raise
