"""The public Python API: ``from csale_app import ALE, CSALE, MACM, MKDAChi2``.

Estimators are configured by keyword with the CLI's option names and defaults (``n_iters``,
``voxel_thresh``, ``cluster_alpha``, ``random_seed``, ...). ``fit(studyset, database=None,
roi=None)`` takes a path (any input format), a pandas DataFrame of foci (``study_id,
contrast_id, x, y, z, space, sample_size``) or a NiMARE ``Dataset``/``Studyset``, and returns
a :class:`~csale_app.results.MetaResult`::

    from csale_app import CSALE
    res = CSALE(n_iters=2000, voxel_thresh=0.001).fit("nback.tsv", database="brainmap/",
                                                      roi="cerebellum")
    img = res.get_map("z_desc-thresholded")          # nibabel image
    res.get_table("clusters")                        # DataFrame
    res.to_bids("derivatives/csale"); res.report("derivatives/csale")

``fit`` is the in-memory core (:mod:`csale_app.core`: load the studyset, build the run
context, run the analyses); the CLI's pipeline runs the same core for every studyset it
finds, so API and CLI results are the same numbers and, written with ``to_bids``, the same
bytes. Nothing is written to disk unless asked for (``work_dir`` keeps checkpoints,
``to_bids``/``report`` write results).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields, replace
from functools import partial
from pathlib import Path

from ._version import __version__
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
from .errors import EmptySelectionError
from .io.readers import database_sources
from .io.workdir import remove_checkpoints
from .outputs.studyset_writer import write_result
from .results import MetaResult
from .settings import Settings
from .validate import usage_problems

LOG = logging.getLogger(__name__)
#: Settings an estimator takes as keywords (the rest is per call or CLI-only).
_NOT_KEYWORDS = {
    "analyses",
    "studyset_labels",
    "roi",
    "database",
    "overwrite",
    "verbose",
    "dask_scheduler",
    "dask_scheduler_file",
    "dask_timeout",
    "terms",
}


def _coerce(name: str, value):
    """An option value as the CLI would parse it (same types and ranges, ValueError else)."""
    from .settings import OptionValueError

    meta = next(f.metadata for f in fields(Settings) if f.name == name)
    try:
        if name == "roi_coords":
            return tuple(meta["parse"](",".join(str(v) for v in c)) for c in value)
        if value is None or meta["parse"] is None:
            if meta["choices"] and value is not None and value not in meta["choices"]:
                raise OptionValueError(
                    f"expected one of {', '.join(meta['choices'])}, got {value!r}"
                )
            return value
        return meta["parse"](str(value))
    except OptionValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


class _Estimator:
    analysis = ""

    def __init__(self, **options):
        allowed = {f.name for f in fields(Settings)} - _NOT_KEYWORDS
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unknown options {unknown}; "
                f"options: {', '.join(sorted(allowed))}"
            )
        options = {k: _coerce(k, v) for k, v in options.items()}
        analyses = (
            ("csale", "macm")
            if self.analysis == "macm" and options.get("macm_seed") in ("clusters", "each-cluster")
            else (self.analysis,)
        )
        self.settings = Settings(analyses=analyses, **options)
        problem = usage_problems(self.settings, style="api")
        if problem:
            raise ValueError(problem)

    def get_params(self) -> dict:
        return {
            f.name: getattr(self.settings, f.name)
            for f in fields(Settings)
            if f.name not in _NOT_KEYWORDS
        }

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != getattr(Settings(), k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def fit(
        self,
        studyset=None,
        database=None,
        roi=None,
        label: str | None = None,
        term: str | None = None,
    ) -> MetaResult:
        """Run the analysis on ``studyset`` (see the module docstring for what it takes).

        ``database``: the reference database (C-SALE, MACM): one source or a list; default
        the studyset itself (with a warning for C-SALE). ``roi``: a NIfTI path or a built-in
        name (``"cerebellum"``); ``roi_coords`` is an estimator option. ``term`` instead of
        ``studyset``: the studies of a Neurosynth/NeuroQuery ``database`` folder with weight
        >= ``term_threshold`` for the term (the CLI's ``--term``). Checkpoints are kept
        only in ``work_dir`` when the estimator was given one."""
        if (term is None) == (studyset is None):
            raise TypeError("fit() takes a studyset or term=, not both or neither")
        if term is not None and database is None:
            raise ValueError("term= needs database= (a Neurosynth or NeuroQuery folder)")
        s = replace(
            self.settings,
            roi=None if roi is None else str(roi),
            terms=() if term is None else (term,),
            database=str(database) if isinstance(database, (str, Path)) else None,
        )
        warn = Warnings()
        spec = _database_spec(database, studyset) if needs_database(s) else None
        ctx = build_context(
            s,
            spec,
            s.roi,
            work_root=Path(s.work_dir) if s.work_dir else None,
            warn=warn,
            style="api",
        )
        source = term_studysets(ctx, [term], "api")[0] if term is not None else studyset
        found = prepare_studyset(ctx, source, label, warn, "api")
        if found is None:
            raise EmptySelectionError(
                f"{warn.messages[-1]}; lower min_experiments= to analyse it anyway"
            )
        check_self_reference(ctx, [found], warn, "api")
        job = studyset_job(ctx, found)
        outputs, summary = analyse(ctx, job)
        remove_checkpoints(ctx.work_root, job.label, job.digest)  # results are in memory
        context = {
            "version": __version__,
            "command_line": "csale_app Python API",
            "settings": asdict(ctx.settings),
            "device": device_text(ctx),
            "runtime_s": summary.runtime_s,
            "warnings": warn.messages,
            "studysets": [summary],
            "inputs": {"Input": str(found.source)},
            "database": ctx.database.describe() if ctx.database is not None else None,
            "roi": roi_summary(ctx),
            "reused": [],
        }
        return MetaResult(
            job.label,
            outputs,
            warn.messages,
            write=partial(write_result, ctx=ctx, job=job, outputs=outputs, summary=summary),
            report=partial(_report, context),
            source=str(found.source),
            summary=summary,
        )


def _report(context: dict, out_dir: Path) -> Path:
    from .report.build import build_report

    return build_report(out_dir, {**context, "output_dir": str(out_dir)})


def _database_spec(database, studyset) -> DatabaseSpec:
    """The reference database a fit uses: ``database`` (a source or a list of them), else
    the studyset itself."""
    if database is None:
        return DatabaseSpec((studyset,), "the analysed studyset itself (no database given)")
    items = list(database) if isinstance(database, (list, tuple)) else [database]
    sources: list = []
    for item in items:
        sources += database_sources(item) if isinstance(item, (str, Path)) else [item]
    named = ", ".join(str(x) if isinstance(x, (str, Path)) else type(x).__name__ for x in items)
    return DatabaseSpec(tuple(sources), f"the database given ({named})")


class ALE(_Estimator):
    """ALE with Monte Carlo FWE (NiMARE's ALE + FWECorrector(method="montecarlo"))."""

    analysis = "ale"


class CSALE(_Estimator):
    """C-SALE: specific ALE against the base rate of a reference database."""

    analysis = "csale"


class MACM(_Estimator):
    """MACM: experiments of the reference database in a seed (``roi``/``roi_coords``), then
    whole-brain ALE and C-SALE of that selection."""

    analysis = "macm"


class MKDAChi2(_Estimator):
    """Neurosynth's statistics (NiMARE's ``MKDAChi2``): the studyset's experiments against
    the reference database's other experiments; uniformity and association tests,
    posterior probabilities and FDR maps (``get_map("z_desc-association_level-voxel_corr-
    FDR")``)."""

    analysis = "mkdachi2"
