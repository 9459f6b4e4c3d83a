"""The BIDS App around the core: folders only. No maths here.

The pipeline finds the studysets in INPUT_DIR (files and ``--term``), applies the database
rule, takes the output locks, reuses finished results, stages and publishes each studyset's
folder and writes the report. For each studyset it calls the same in-memory core as the
Python API (:mod:`csale_app.core`: ``build_context``, ``prepare_studyset``, ``analyse``).

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

import contextlib
import logging
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from . import interrupt
from ._version import __version__
from .context import RunContext
from .records import RunRecord, StudysetSummary
from .core import (
    DatabaseSpec,
    Warnings,
    analyse,
    build_context,
    check_self_reference,
    device_text,
    needs_database,
    prepare_studyset,
    roi_summary,
    studyset_job,
    term_studysets,
)
from .errors import (
    EmptySelectionError,
    InputNotFoundError,
    MissingInputError,
    OutputError,
    UsageError,
)
from .io.readers import database_sources, find_studysets, study_label
from .io.studyset import Studyset
from .io.terms import term_label
from .io.workdir import DEFAULT_WORK, remove_checkpoints, report_figure_dir
from .outputs import bids
from .outputs.studyset_writer import reusable, write_studyset
from .settings import Settings
from .tasks import run_all

LOG = logging.getLogger(__name__)
#: ROI files INPUT_DIR may hold (used when --roi and --roi-coords are not given).
DEFAULT_ROI_FILES = ("roi.nii.gz", "roi.nii")


class Pipeline:
    def __init__(self, settings: Settings, input_dir: Path, output_dir: Path):
        self.s = settings
        self.input_dir = Path(input_dir)
        self.output_dir = Path(output_dir)
        self.warn = Warnings()
        self.summaries: list[StudysetSummary] = []
        self.reused: list[str] = []
        self.command_line = ""
        self.on_output_ready = lambda: None
        #: wraps the report's figure drawing (the CLI freezes the heap there: cli/run.py)
        self.report_drawing = contextlib.nullcontext
        self.report_process = None  # report/forked.py: the CLI starts it before the imports
        self.t_start = time.perf_counter()

    @property
    def warnings(self) -> list[str]:
        return self.warn.messages

    # ---- inputs -------------------------------------------------------------------------
    def check_paths(self) -> None:
        if not self.input_dir.is_dir():
            raise InputNotFoundError(
                f"{self.input_dir}: input folder does not exist or is not a folder"
            )
        inp = self.input_dir.resolve()
        out = self.output_dir.resolve()
        if out == inp or inp in out.parents:
            raise OutputError(
                f"{self.output_dir}: the output folder must not be the input folder "
                "or inside it (inputs are never written)"
            )
        if self.s.work_dir:
            work = Path(self.s.work_dir).resolve()
            if work == inp or inp in work.parents:
                raise UsageError(
                    f"{self.s.work_dir}: the work folder (-w/--work-dir) must not "
                    "be the input folder or inside it (inputs are never written)"
                )
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
            raise EmptySelectionError(
                f"{self.input_dir}: no coordinate tables found (.txt, .tsv, .csv, .json)"
            )
        found = [(study_label(f), f) for f in files]
        taken = {lab.lower(): str(f) for lab, f in found}
        for term in self.s.terms:
            label = term_label(term)
            if label == "term":
                raise UsageError(
                    f"--term {term!r} has no ASCII letters or digits to make a studyset label"
                )
            if label.lower() in taken:
                raise UsageError(
                    f"--term {term!r} makes studyset label {label!r}, the same "
                    f"as {taken[label.lower()]} (labels are case-insensitive)"
                )
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
                f"(found: {', '.join(lab for lab, _ in labelled) or 'none'})"
            )
        return [(lab, f) for lab, f in labelled if lab in wanted]

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
            raise MissingInputError(
                f"{src}: the reference database folder holds no "
                "coordinate tables (.txt, .tsv, .csv, .json)"
            )
        return files, source

    def database_spec(self, every: list[tuple[str, Path]]) -> DatabaseSpec:
        files, source = self.database_files(every)
        return DatabaseSpec(tuple(files), source)

    def default_roi(self) -> str | None:
        """INPUT_DIR/roi.nii.gz (or .nii) when --roi and --roi-coords are not given."""
        if self.s.roi is not None or self.s.roi_coords:
            return self.s.roi
        found = [self.input_dir / n for n in DEFAULT_ROI_FILES if (self.input_dir / n).exists()]
        return str(found[0]) if found else None

    def prepare(self, every: list[tuple[str, Path | str]]) -> tuple[RunContext, list[Studyset]]:
        """The run context and every selected studyset, loaded and checked: everything
        before OUTPUT_DIR exists."""
        s = self.s
        selected = self.select_studysets(every)
        ctx = build_context(
            s,
            self.database_spec(every) if needs_database(s) else None,
            self.default_roi(),
            work_root=Path(s.work_dir) if s.work_dir else self.output_dir / DEFAULT_WORK,
            warn=self.warn,
        )
        self.s = ctx.settings  # a GPU run checkpoints less often
        wanted = [t for _, t in selected if isinstance(t, str)]
        terms = iter(term_studysets(ctx, wanted) if wanted else ())
        loaded = []
        for label, source in selected:
            found = prepare_studyset(
                ctx, next(terms) if isinstance(source, str) else source, label, self.warn
            )
            if found is not None:
                loaded.append(found)
        if not loaded:
            raise EmptySelectionError(
                f"{self.input_dir}: no studyset has at least "
                f"--min-experiments {s.min_experiments} experiments"
            )
        check_self_reference(ctx, loaded, self.warn)
        address = self.scheduler_address()
        if address:
            from .distributed import connect  # dask is imported only when asked for

            ctx = replace(ctx, executor=connect(address, ctx.settings))
        return ctx, loaded

    def run(self) -> list[dict]:
        self.check_paths()
        if self.report_process is None:  # the CLI starts it earlier
            from .report.forked import start_report_process  # imports the plotting stack

            self.report_process = start_report_process(self.s.nprocs)
        every = self.all_studysets()
        ctx, loaded = self.prepare(every)
        bids.prepare_output_dir(self.output_dir)
        self.on_output_ready()
        bids.write_dataset_description(self.output_dir, self.s.authors)
        reason = getattr(ctx.backend, "fallback_reason", None)
        LOG.info(
            "compute device: %s%s",
            ctx.backend.describe(),
            f"; no GPU used: {reason}" if reason else "",
            extra={"console": True},
        )
        units = [partial(self.run_studyset, ctx, studyset) for studyset in loaded]
        for label, (summary, reused) in zip(
            [st.label for st in loaded], run_all(ctx.executor, units)
        ):
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
            "device": device_text(ctx),
            "runtime_s": round(time.perf_counter() - self.t_start, 1),
            "warnings": self.warnings,
            "studysets": self.summaries,
            "input_dir": str(self.input_dir),
            "output_dir": str(self.output_dir),
            "database": ctx.database.describe() if ctx.database else None,
            "roi": roi_summary(ctx),
            "reused": self.reused,
        }

    def write_report(self, ctx: RunContext) -> None:
        proc, self.report_process = self.report_process, None
        if proc is None:
            from .report.build import build_report

            path = build_report(
                self.output_dir,
                self.report_context(ctx),
                figure_dir=report_figure_dir(self.output_dir),
                drawing=self.report_drawing,
            )
        else:  # the report process (report/forked.py), which imported the plotting stack
            path = proc.build(
                self.output_dir,
                self.report_context(ctx),
                figure_dir=report_figure_dir(self.output_dir),
            )
        LOG.info("report: %s", path)

    def run_studyset(self, ctx: RunContext, studyset: Studyset) -> tuple[dict, bool]:
        """One studyset's analyses, published in one rename: (summary, reused)."""
        interrupt.checkpoint()
        job = studyset_job(ctx, studyset)
        if reusable(self.output_dir, job.label, job.digest, self.s.overwrite):
            record = bids.read_provenance(self.output_dir / f"studyset-{job.label}")
            return RunRecord.from_json(record).summary, True
        outputs, summary = analyse(ctx, job)
        write_studyset(self.output_dir, ctx, job, outputs, summary)
        remove_checkpoints(ctx.work_root, job.label, job.digest)
        return summary, False
