"""One function per analysis: run it through ``stats`` into an in-memory result. No maths,
no disk (checkpoints aside: the work folder's ``ChunkDir``, kept until the studyset's
results are published, so a run that fails while writing resumes without recomputing).

Each stage takes the run's :class:`~csale_app.context.RunContext` and the studyset's
:class:`~csale_app.context.StudysetJob` and returns :class:`~csale_app.results.AnalysisOutput`
(written by :func:`csale_app.results.write_output`). The public estimators
(:mod:`csale_app.api`) call these, and the CLI calls the estimators.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from .context import Progress, RunContext, StudysetJob, common_sidecar
from .io.experiments import Experiments, select_by_seed
from .io.terms import TermStudyset
from .io.workdir import ChunkDir
from .kernels.plan import Grid
from .outputs import names
from .results import AnalysisOutput
from .stats.ale_analysis import ALEParams, run_ale
from .stats.contributions import contributions, summarize
from .stats.csale import CSALEParams, run_csale
from .stats.montecarlo import NullRun, computed_by
from .stats import subsamples
from .tasks import run_all
from .stats.labels import add_labels, peaks_table
from .stats.tables import cluster_table

LOG = logging.getLogger(__name__)


def cluster_tables(meta, clusters, labels, stat, grid, affine, exps, ma,
                   side) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Cluster table with atlas labels, peaks/sub-peaks and per-experiment contributions."""
    clusters = add_labels(clusters, labels, grid, affine, label_column="cluster_id")
    peaks = peaks_table(stat, labels, grid, affine, value_name="ale")
    contrib = contributions(ma, labels, exps.ids, grid, exps.ijk, exps.focus_start, stat=stat)
    if len(clusters) and len(contrib):
        clusters["top_contributors"] = summarize(contrib).reindex(
            clusters["cluster_id"]).to_numpy()
    return {
        names.analysis_table(meta, "clusters"): (clusters, side),
        names.analysis_table(meta, "peaks"): (peaks, side),
        names.analysis_table(meta, "contributions"): (contrib, {
            **side, "Jackknife": "mean over cluster voxels of 1 - ALE without the experiment "
                                 "/ ALE (nimare.diagnostics.Jackknife)",
            "FocusCounter": "foci of the experiment inside the cluster"}),
    }


@dataclass(frozen=True)
class SignificantClusters:
    """What a MACM needs of a C-SALE result (its seeds): cluster id per analysis voxel."""

    significant_labels: np.ndarray


def null_run(ctx: RunContext, store, progress) -> NullRun:
    ledger = {} if ctx.executor is not None else None  # who computed each chunk
    return NullRun(ctx.backend, ctx.settings.chunk_size, store, progress, ctx.executor, ledger)


def computed_by_note(ctx: RunContext, run: NullRun) -> dict:
    """``ComputedBy`` for the sidecars of a cluster run (nothing without a cluster, so a
    local run's sidecars are unchanged)."""
    if run.ledger is None:
        return {}
    return {"ComputedBy": computed_by(run.ledger, ctx.settings.n_iters, run.chunk_size,
                                      getattr(ctx.executor, "address", ""))}


def _tag(label: str, macm: str | None) -> str:
    return f"{label}{'-' + macm if macm else ''}"


def ale_output(ctx: RunContext, job: StudysetJob, macm: str | None = None,
               exps: Experiments | None = None, grid: Grid | None = None,
               source: str | None = None) -> AnalysisOutput:
    """ALE of the studyset (or, for a MACM, of the selected experiments on ``grid``)."""
    s = ctx.settings
    exps = exps or job.experiments
    grid = grid or ctx.grid
    report_mask = None if macm else ctx.report_mask
    tag = _tag(job.label, macm)
    store = ChunkDir(ctx.work_root, f"{tag}-ale-{job.digest}-c{s.chunk_size}")
    prog = Progress(s.n_iters, f"{tag} ALE null", s.quiet)
    params = ALEParams(s.n_iters, s.voxel_thresh, s.cluster_alpha, s.kernel_fwhm,
                       s.random_seed)
    run = null_run(ctx, store, prog)
    res = run_ale(exps, grid, ctx.affine, params, run, report_mask)
    seconds = prog.close()
    extra = {"ClusterFormingThreshold": {"p": s.voxel_thresh, "ale": res.ss_thresh},
             "Connectivity": "faces (6-connected)", "NullIterations": s.n_iters,
             "AnalysisMaskVoxels": grid.n_mask, **ctx.extent_note(macm is not None),
             **computed_by_note(ctx, run)}
    if macm:
        extra["ReferenceDatabase"] = ctx.database.describe()
    side = common_sidecar(ctx, exps, source or job.path,
                          "ALE with Monte Carlo FWE (Eickhoff 2012, 2016)", extra)
    tables = cluster_tables("ale", res.clusters, res.significant_labels, res.observed.stat,
                            grid, ctx.affine, exps, res.observed.ma, side)
    null = pd.DataFrame({"max_ale": res.null["max"], "max_cluster_size": res.null["size"],
                         "max_cluster_mass": res.null["mass"]})
    tables[names.analysis_table("ale", names.NULL_VALUES)] = (null, None)
    summary = {"n_clusters": int(len(res.clusters)), "ss_thresh": res.ss_thresh,
               "null_seconds": round(seconds, 2), "n_experiments": exps.n_experiments,
               "vfwe_threshold": float(np.percentile(res.null["max"], 95))}
    # the MA maps (the largest arrays of a run) are not kept once the tables are made
    return AnalysisOutput("ale", macm, grid, ctx.affine, res.maps, side, {}, tables, {},
                          summary, None)


def csale_output(ctx: RunContext, job: StudysetJob, macm: str | None = None,
                 exps: Experiments | None = None, grid: Grid | None = None,
                 source: str | None = None) -> AnalysisOutput:
    """C-SALE of the studyset against the run's reference database."""
    s = ctx.settings
    exps = exps or job.experiments
    grid = grid or ctx.grid
    db = ctx.database
    report_mask = None if macm else ctx.report_mask
    tag = _tag(job.label, macm)
    store = ChunkDir(ctx.work_root, f"{tag}-csale-{job.digest}-c{s.chunk_size}")
    prog = Progress(s.n_iters, f"{tag} C-SALE null", s.quiet)
    params = CSALEParams(s.n_iters, s.voxel_thresh, s.cluster_alpha, s.min_cluster_size,
                         s.kernel_fwhm, s.random_seed, s.csale_null)
    run = null_run(ctx, store, prog)
    res = run_csale(exps, db.experiments, grid, ctx.affine, report_mask, params, run)
    seconds = prog.close()
    side = common_sidecar(ctx, exps, source or job.path, "C-SALE: specific ALE against a "
                          "base-rate null (Magielse 2025; SCALE, Langner 2014)", {
                              "NullApproach": s.csale_null, "NullIterations": s.n_iters,
                              "ReferenceDatabase": db.describe(),
                              "VoxelP": "#(null >= observed) / n, clipped to [1/n, 1 - 1/n]",
                              "SmallestPossibleP": 1.0 / s.n_iters,
                              "ClusterFWE": "each permutation's p map against the other "
                                            "n - 1, max cluster size (faces), one streaming "
                                            "pass",
                              "ExtentThreshold": {"p": s.voxel_thresh,
                                                  "min_voxels": s.min_cluster_size},
                              "AnalysisMaskVoxels": grid.n_mask,
                              **ctx.extent_note(macm is not None),
                              **computed_by_note(ctx, run)})
    tables = cluster_tables("csale", res.clusters, res.significant_labels, res.stat, grid,
                            ctx.affine, exps, res.observed.ma, side)
    null = pd.DataFrame({"max_ale": res.null_max, "max_cluster_size": res.null_cluster_size})
    tables[names.analysis_table("csale", names.NULL_VALUES)] = (null, None)
    extent = add_labels(cluster_table(res.extent_labels, res.stat, grid, ctx.affine,
                                      value_name="peak_ale"), res.extent_labels, grid,
                        ctx.affine, label_column="label").drop(columns="label")
    tables[names.analysis_table("csale", names.EXTENT_CLUSTERS)] = (extent, side)
    maps, map_sidecars = dict(res.maps), {}
    summary_extra = {}
    if s.subsamples > 0 and macm is None:
        shares, table, summary_extra = subsample_outputs(ctx, tag, exps, grid, report_mask,
                                                         params, res.maps["stat-z"])
        for name, (values, map_side) in shares.items():
            maps[name], map_sidecars[name] = values, map_side
        tables[names.analysis_table("csale", names.SUBSAMPLE_TABLE)] = table
    summary = {"n_clusters": int(len(res.clusters)), "null_seconds": round(seconds, 2),
               "n_extent_clusters": int(res.extent_labels.max()),
               "n_experiments": exps.n_experiments, **summary_extra}
    return AnalysisOutput("csale", macm, grid, ctx.affine, maps, side, map_sidecars, tables,
                          {}, summary, SignificantClusters(res.significant_labels))


def subsample_outputs(ctx: RunContext, tag: str, exps: Experiments, grid: Grid,
                      report_mask, params: CSALEParams, full_z: np.ndarray):
    """C-SALE of ``--subsamples`` random subsamples (independent units: side by side on a
    Dask cluster): ({map: (share, sidecar)}, (correlation table, sidecar), summary)."""
    s = ctx.settings
    prog = Progress(s.n_iters * s.subsamples, f"{tag} C-SALE subsamples "
                    f"({s.subsamples} x {s.subsample_size:g})", s.quiet)
    units = subsamples.subsample_units(
        exps, ctx.database.experiments, grid, ctx.affine, report_mask, params,
        null_run(ctx, None, prog), full_z, n_subsamples=s.subsamples, size=s.subsample_size)
    results = run_all(ctx.executor, units)
    prog.close()
    count = len(results[0].experiments)
    where = "the ROI" if report_mask is not None else "the analysis mask"
    common = {"Subsamples": s.subsamples, "SubsampleSize": s.subsample_size,
              "ExperimentsPerSubsample": count,
              "Draw": "experiments drawn without replacement, each subsample independently"}
    extent, fwe = subsamples.share_maps(results)
    shares = {
        names.SUBSAMPLE_EXTENT_MAP: (extent, {**common, "Statistic": (
            "share of subsamples in which the voxel lies in the cluster-extent map (the "
            f"study's rule: {where} first, p < {s.voxel_thresh:g}, faces connectivity, "
            f"clusters of more than {s.min_cluster_size} voxels)")}),
        names.SUBSAMPLE_FWE_MAP: (fwe, {**common, "Statistic": (
            "share of subsamples in which the voxel lies in a significant cluster "
            f"(cluster-level FWE p < {s.cluster_alpha:g}, clusters formed at "
            f"p < {s.voxel_thresh:g} in the analysis mask, reported in {where})")}),
    }
    table = subsamples.correlation_table(results, exps)
    r = table["pearson_r"].to_numpy(dtype=float)
    if np.isnan(r).any():
        ctx.warn(f"{tag}: {int(np.isnan(r).sum())} of {len(r)} subsample z maps (or the full "
                 f"sample's) are constant in {where}, so their correlation is undefined (n/a)")
    side = {**common, "Description": "One row per C-SALE subsample: the Pearson correlation "
            f"of its unthresholded z map with the full sample's z map inside {where}, and the "
            "voxels that survive each rule",
            "pearson_r": {"Description": "Pearson correlation of the subsample's "
                          f"unthresholded z map with the full sample's, voxels of {where}"},
            "extent_voxels": {"Description": "voxels in the subsample's cluster-extent map",
                              "Units": "voxels"},
            "significant_voxels": {"Description": "voxels in the subsample's significant "
                                   "clusters (cluster-level FWE)", "Units": "voxels"},
            "subsample": {"Description": "subsample number (1-based)"},
            "seed": {"Description": "seed of the subsample's permutation null"},
            "n_experiments": {"Description": "experiments in the subsample"},
            "experiment_ids": {"Description": "experiments of the subsample ('|'-separated)"}}
    ok = r[np.isfinite(r)]
    summary = {"n_subsamples": len(results), "subsample_experiments": count,
               "subsample_median_r": float(np.median(ok)) if len(ok) else None}
    return shares, (table, side), summary


def macm_seeds(ctx: RunContext, csale_res):
    """(kind, [(label, seed mask on the template grid)], reason-if-none) for --macm-seed."""
    s, roi, grid = ctx.settings, ctx.roi, ctx.grid
    kind = s.macm_seed or ("clusters" if csale_res is not None else "roi")
    if kind == "roi":
        if roi is None:
            return kind, [], "no ROI given (--roi, --roi-coords or INPUT_DIR/roi.nii.gz)"
        return kind, [(roi.label, roi.mask)], None
    if csale_res is None:
        return kind, [], f"--macm-seed {kind} needs C-SALE results (add csale to --analyses)"
    labels = csale_res.significant_labels
    if labels.max() == 0:
        return kind, [], "C-SALE found no significant cluster to seed the MACM"
    if kind == "clusters":
        return kind, [("clusters", grid.to_volume(labels > 0))], None
    return kind, [(f"cluster{k}", grid.to_volume(labels == k))
                  for k in range(1, labels.max() + 1)], None


def macm_outputs(ctx: RunContext, job: StudysetJob,
                 csale_res) -> tuple[list[AnalysisOutput], dict, dict]:
    """MACM: experiments of the reference database in each seed, then whole-brain ALE and
    C-SALE of that selection. Returns (outputs, summary, skipped)."""
    s, db = ctx.settings, ctx.database.experiments
    kind, seeds, reason = macm_seeds(ctx, csale_res)
    if reason:
        LOG.warning("studyset '%s': MACM skipped: %s", job.label, reason)
        return [], {"skipped": reason}, {"macm": reason}

    def one_seed(name, seed):
        selected, in_seed = select_by_seed(db, seed, s.macm_coverage)
        sel = db.subset(selected)
        table = pd.DataFrame({"experiment_id": db.ids, "study_id": db.study_ids,
                              "n_foci": db.foci_counts(), "foci_in_seed": in_seed,
                              "sample_size": db.sample_size, "selected": selected})
        found = [AnalysisOutput(
            "seed", name, ctx.brain_grid, ctx.affine,
            tables={names.MACM_EXPERIMENTS: (table[table["selected"]].reset_index(drop=True),
                                             None)},
            masks={names.seed_mask_filename(job.label, name):
                   (seed, {"Description": f"MACM seed ({kind})"})})]
        if sel.n_experiments < s.min_experiments:
            msg = (f"{sel.n_experiments} experiments selected < --min-experiments "
                   f"{s.min_experiments}")
            LOG.warning("studyset '%s': MACM %s skipped: %s", job.label, name, msg)
            return found, {"skipped": msg}, msg
        src = f"reference database ({', '.join(ctx.database.files)})"
        ale = ale_output(ctx, job, name, sel, ctx.brain_grid, src)
        csale = csale_output(ctx, job, name, sel, ctx.brain_grid, src)
        return found + [ale, csale], {"n_selected": sel.n_experiments, "ale": ale.summary,
                                      "csale": csale.summary}, None

    # seeds are independent: side by side on a Dask cluster (csale_app.tasks)
    units = [partial(one_seed, name, seed) for name, seed in seeds]
    outputs, done, skipped = [], {}, {}
    for (name, _), (found, summary, msg) in zip(seeds, run_all(ctx.executor, units)):
        outputs += found
        done[name] = summary
        if msg:
            skipped[f"macm-{name}"] = msg
    return outputs, {"seed": kind, "seeds": done}, skipped


def run_analyses(ctx: RunContext, job: StudysetJob,
                 extra: dict | None = None) -> tuple[list[AnalysisOutput], dict]:
    """Every analysis of ``ctx.settings.analyses`` for one studyset: (outputs, summary)."""
    s = ctx.settings
    exps = job.experiments
    summary = {"label": job.label, "source": str(job.path),
               "n_experiments": exps.n_experiments, "n_foci": exps.n_foci,
               "analyses": {}, "skipped": {},
               "database": (None if ctx.database is None else
                            {**ctx.database.describe(),
                             "same_as_studyset": ctx.database.is_only(job.source_digest)}),
               **(extra or {})}
    if isinstance(job.path, TermStudyset):
        summary["term"] = job.path.summary()
    outputs: list[AnalysisOutput] = []
    csale = None
    if "ale" in s.analyses:
        ale = ale_output(ctx, job)
        outputs.append(ale)
        summary["analyses"]["ale"] = ale.summary
    if "csale" in s.analyses:
        csale = csale_output(ctx, job)
        outputs.append(csale)
        summary["analyses"]["csale"] = csale.summary
    if "macm" in s.analyses:
        macm, macm_summary, skipped = macm_outputs(
            ctx, job, csale.raw if csale is not None else None)
        outputs += macm
        summary["analyses"]["macm"] = macm_summary
        summary["skipped"].update(skipped)
    return outputs, summary
