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

The CLI runs every studyset through :func:`csale_app.stages.run_analyses`, the same code
``fit`` runs, so API
and CLI results are the same numbers and, written with ``to_bids``, the same bytes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd

from .context import StudysetJob
from .io.workdir import remove_checkpoints
from .pipeline import Pipeline, reusable, studyset_digest, write_studyset
from .results import MetaResult
from .stages import run_analyses
from .settings import Settings
from .validate import usage_problems

LOG = logging.getLogger(__name__)
#: Settings an estimator takes as keywords (the rest is per call or CLI-only).
_NOT_KEYWORDS = {"analyses", "studyset_labels", "roi", "database", "work_dir", "overwrite",
                 "verbose", "dask_scheduler", "dask_scheduler_file", "dask_timeout", "terms"}


def _materialise(source, folder: Path, name: str) -> Path:
    """A path for ``source`` (a path, a DataFrame of foci, or a NiMARE Dataset/Studyset)."""
    if isinstance(source, (str, Path)):
        return Path(source)
    if hasattr(source, "to_dataset") and not hasattr(source, "coordinates"):
        source = source.to_dataset()  # nimare.nimads.Studyset
    if hasattr(source, "coordinates") and hasattr(source, "metadata"):  # nimare Dataset
        source = _dataset_frame(source)
    if isinstance(source, pd.DataFrame):
        path = folder / f"{name}.tsv"
        source.to_csv(path, sep="\t", index=False)
        return path
    raise TypeError(f"cannot read a studyset from {type(source).__name__}; give a path, a "
                    "DataFrame of foci or a NiMARE Dataset/Studyset")


def _dataset_frame(dset) -> pd.DataFrame:
    """A NiMARE Dataset's foci with one sample size per contrast (mean of its list, as
    NiMARE's ALE kernel uses)."""
    coords = dset.coordinates.copy()
    if callable(getattr(coords, "to_pandas", None)):
        coords = coords.to_pandas()
    meta = dset.metadata
    sizes = {}
    if "sample_sizes" in meta:
        for ident, value in zip(meta["id"], meta["sample_sizes"]):
            vals = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])
                    if v is not None]
            sizes[ident] = sum(vals) / len(vals) if vals else float("nan")
    space = str(getattr(dset, "space", "MNI")).lower()
    return pd.DataFrame({
        "study_id": coords["study_id"].astype(str),
        "contrast_id": coords["contrast_id"].astype(str),
        "x": coords["x"], "y": coords["y"], "z": coords["z"],
        "space": "TAL" if "tal" in space else "MNI",
        "sample_size": coords["id"].map(sizes),
    })


def _coerce(name: str, value):
    """An option value as the CLI would parse it (same types and ranges, ValueError else)."""
    from .settings import OptionValueError

    meta = next(f.metadata for f in fields(Settings) if f.name == name)
    try:
        if name == "roi_coords":
            return tuple(meta["parse"](",".join(str(v) for v in c)) for c in value)
        if value is None or meta["parse"] is None:
            if meta["choices"] and value is not None and value not in meta["choices"]:
                raise OptionValueError(f"expected one of {', '.join(meta['choices'])}, "
                                       f"got {value!r}")
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
            raise TypeError(f"{type(self).__name__}() got unknown options {unknown}; "
                            f"options: {', '.join(sorted(allowed))}")
        options = {k: _coerce(k, v) for k, v in options.items()}
        analyses = ("csale", "macm") if self.analysis == "macm" and \
            options.get("macm_seed") in ("clusters", "each-cluster") else (self.analysis,)
        self.settings = Settings(analyses=analyses, **options)
        problem = usage_problems(self.settings)
        if problem:
            raise ValueError(problem.replace("--", "").replace("-", "_"))

    def get_params(self) -> dict:
        return {f.name: getattr(self.settings, f.name) for f in fields(Settings)
                if f.name not in _NOT_KEYWORDS}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items()
                   if v != getattr(Settings(), k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def fit(self, studyset=None, database=None, roi=None, label: str | None = None,
            term: str | None = None) -> MetaResult:
        """Run the analysis on ``studyset`` (see the module docstring for what it takes).

        ``database``: the reference database (C-SALE, MACM): one source or a list; default
        the studyset itself (with a warning for C-SALE). ``roi``: a NIfTI path or a built-in
        name (``"cerebellum"``); ``roi_coords`` is an estimator option. ``term`` instead of
        ``studyset``: the studies of a Neurosynth/NeuroQuery ``database`` folder with weight
        >= ``term_threshold`` for the term (the CLI's ``--term``)."""
        from .io.readers import database_sources, study_label
        from .io.terms import term_label

        if (term is None) == (studyset is None):
            raise TypeError("fit() takes a studyset or term=, not both or neither")
        if term is not None and database is None:
            raise ValueError("term= needs database= (a Neurosynth or NeuroQuery folder)")
        tmp = Path(tempfile.mkdtemp(prefix="csale_api_"))
        try:
            path = term if term is not None else _materialise(studyset, tmp,
                                                              label or "studyset")
            label = label or (term_label(term) if term is not None else study_label(path))
            s = replace(self.settings, roi=None if roi is None else str(roi),
                        terms=() if term is None else (term,),
                        database=(str(database) if isinstance(database, (str, Path))
                                  else None if database is None else "given"),
                        work_dir=self.settings.work_dir or str(tmp / "work"))
            pipe = Pipeline(s, None, None)
            if database is None:
                db_files, source = [path], "the analysed studyset itself (no database given)"
            else:
                items = database if isinstance(database, (list, tuple)) else [database]
                db_files = []
                for k, item in enumerate(items):
                    p = _materialise(item, tmp, f"database{k}")
                    db_files += database_sources(p)
                source = "the database given (" + ", ".join(
                    str(x) if isinstance(x, (str, Path)) else type(x).__name__
                    for x in items) + ")"
            t0 = time.perf_counter()
            ctx, loaded, extra = pipe.build_context([(label, path)], (db_files, source))
            _, path, exps = loaded[0]  # a term is now its TermStudyset
            source_digest = pipe.source_digest(path)
            job = StudysetJob(label, path, exps, studyset_digest(ctx, source_digest),
                              source_digest)
            outputs, summary = run_analyses(ctx, job, extra)
            remove_checkpoints(ctx.work_root, label, job.digest)  # results are in memory
            summary = summary.with_runtime(time.perf_counter() - t0)
            report_context = pipe.report_context(ctx)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # results are in memory

        def writer(out_dir: Path, overwrite: bool) -> Path:
            from .outputs import bids

            lock = bids.prepare_output_dir(out_dir, [label])
            try:
                bids.write_dataset_description(out_dir, s.authors)
                if not reusable(out_dir, label, job.digest, overwrite):
                    write_studyset(out_dir, ctx, job, outputs, summary)
                bids.write_dataset_description(out_dir, s.authors)  # with this studyset
            finally:
                if lock is not None:
                    lock.release()
            return out_dir / f"studyset-{label}"

        report_context["studysets"] = [summary]
        return MetaResult(label, outputs, writer, pipe.warnings, report_context)


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
