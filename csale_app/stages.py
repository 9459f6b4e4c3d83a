"""One function per analysis: run it through ``stats`` and write its outputs. No maths.

Each stage takes the run's :class:`~csale_app.context.RunContext` and the studyset's
:class:`~csale_app.context.StudysetJob` and returns a :class:`~csale_app.context.StageResult`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .context import Progress, RunContext, StageResult, StudysetJob, common_sidecar
from .io.experiments import Experiments, select_by_seed
from .io.workdir import ChunkDir
from .kernels.plan import Grid
from .outputs import bids
from .stats.ale_analysis import run_ale
from .stats.contributions import contributions, summarize
from .stats.csale import run_csale, subsample_share
from .stats.labels import add_labels, peaks_table

LOG = logging.getLogger("csale_app")


def write_cluster_tables(out, meta, clusters, labels, stat, grid, affine, exps, ma, side,
                         macm=None):
    """Cluster table with atlas labels, peaks/sub-peaks and per-experiment contributions."""
    base = f"{bids.SPACE_ENT}_meta-{meta}"
    clusters = add_labels(clusters, labels, grid, affine, label_column="cluster_id")
    peaks = peaks_table(stat, labels, grid, affine, value_name="ale")
    contrib = contributions(ma, labels, exps.ids, grid, exps.ijk, exps.focus_start, stat=stat)
    if len(clusters) and len(contrib):
        clusters["top_contributors"] = summarize(contrib).reindex(
            clusters["cluster_id"]).to_numpy()
    bids.write_table(out.table_path(f"{base}_clusters", macm), clusters, side)
    bids.write_table(out.table_path(f"{base}_peaks", macm), peaks, side)
    bids.write_table(out.table_path(f"{base}_contributions", macm), contrib, {
        **side, "Jackknife": "mean over cluster voxels of 1 - ALE without the experiment / "
                             "ALE (nimare.diagnostics.Jackknife)",
        "FocusCounter": "foci of the experiment inside the cluster"})


def _tag(job: StudysetJob, macm: str | None) -> str:
    return f"{job.label}{'-' + macm if macm else ''}"


def run_ale_stage(ctx: RunContext, job: StudysetJob, macm: str | None = None,
                  exps: Experiments | None = None, grid: Grid | None = None,
                  source: str | None = None) -> StageResult:
    """ALE of the studyset (or, for a MACM, of the selected experiments on ``grid``)."""
    s = ctx.settings
    exps = exps or job.experiments
    grid = grid or ctx.grid
    report_mask = None if macm else ctx.report_mask
    store = ChunkDir(ctx.work_root, f"{_tag(job, macm)}-ale-{job.digest}-c{s.chunk_size}")
    prog = Progress(s.n_iters, f"{_tag(job, macm)} ALE null", s.quiet)
    res = run_ale(exps, grid, ctx.affine, n_iters=s.n_iters, voxel_thresh=s.voxel_thresh,
                  cluster_alpha=s.cluster_alpha, kernel_fwhm=s.kernel_fwhm,
                  seed=s.random_seed, backend=ctx.backend, chunk_size=s.chunk_size,
                  store=store, progress=prog, report_mask=report_mask,
                  executor=ctx.executor)
    seconds = prog.close()
    extra = {"ClusterFormingThreshold": {"p": s.voxel_thresh, "ale": res.ss_thresh},
             "Connectivity": "faces (6-connected)", "NullIterations": s.n_iters,
             "AnalysisMaskVoxels": grid.n_mask, **ctx.extent_note(macm is not None)}
    if macm:
        extra["ReferenceDatabase"] = ctx.database.describe()
    side = common_sidecar(ctx, exps, source or job.path,
                          "ALE with Monte Carlo FWE (Eickhoff 2012, 2016)", extra)
    for name, values in res.maps.items():
        bids.write_map(job.out.map_path("ale", name, macm), values, grid, ctx.affine,
                       {**side, "Statistic": name})
    write_cluster_tables(job.out, "ale", res.clusters, res.significant_labels,
                         res.observed.stat, grid, ctx.affine, exps, res.observed.ma, side, macm)
    null = pd.DataFrame({"max_ale": res.null["max"], "max_cluster_size": res.null["size"],
                         "max_cluster_mass": res.null["mass"]})
    bids.write_table(job.out.table_path("meta-ale_desc-null_values", macm), null)
    store.remove()
    return StageResult({"n_clusters": int(len(res.clusters)), "ss_thresh": res.ss_thresh,
                        "null_seconds": round(seconds, 2), "n_experiments": exps.n_experiments,
                        "vfwe_threshold": float(np.percentile(res.null["max"], 95))})


def run_csale_stage(ctx: RunContext, job: StudysetJob, macm: str | None = None,
                    exps: Experiments | None = None, grid: Grid | None = None,
                    source: str | None = None) -> StageResult:
    """C-SALE of the studyset against the run's reference database."""
    s = ctx.settings
    exps = exps or job.experiments
    grid = grid or ctx.grid
    db = ctx.database
    report_mask = None if macm else ctx.report_mask
    store = ChunkDir(ctx.work_root, f"{_tag(job, macm)}-csale-{job.digest}-c{s.chunk_size}")
    prog = Progress(s.n_iters, f"{_tag(job, macm)} C-SALE null", s.quiet)
    options = dict(n_iters=s.n_iters, voxel_thresh=s.voxel_thresh,
                   cluster_alpha=s.cluster_alpha, min_cluster_size=s.min_cluster_size,
                   kernel_fwhm=s.kernel_fwhm, null_kind=s.csale_null, backend=ctx.backend,
                   chunk_size=s.chunk_size, executor=ctx.executor)
    res = run_csale(exps, db.experiments, grid, ctx.affine, report_mask, seed=s.random_seed,
                    store=store, progress=prog, **options)
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
                              **ctx.extent_note(macm is not None)})
    for name, values in res.maps.items():
        bids.write_map(job.out.map_path("csale", name, macm), values, grid, ctx.affine,
                       {**side, "Statistic": name})
    write_cluster_tables(job.out, "csale", res.clusters, res.significant_labels, res.stat,
                         grid, ctx.affine, exps, res.observed.ma, side, macm)
    null = pd.DataFrame({"max_ale": res.null_max, "max_cluster_size": res.null_cluster_size})
    bids.write_table(job.out.table_path("meta-csale_desc-null_values", macm), null)
    store.remove()
    if s.subsamples > 0 and macm is None:
        prog = Progress(s.n_iters * s.subsamples, f"{_tag(job, macm)} C-SALE subsamples "
                        f"({s.subsamples} x {s.subsample_fraction:g})", s.quiet)
        share = subsample_share(exps, db.experiments, grid, ctx.affine, report_mask,
                                n_subsamples=s.subsamples, fraction=s.subsample_fraction,
                                seed=s.random_seed, progress=prog, **options)
        prog.close()
        bids.write_map(job.out.map_path("csale", "stat-prob_desc-subsamples", macm), share,
                       grid, ctx.affine, {
                           **side, "Statistic": "share of subsamples in which the voxel lies "
                                                "in a significant cluster (cluster-FWE)",
                           "Subsamples": s.subsamples,
                           "SubsampleFraction": s.subsample_fraction})
    return StageResult({"n_clusters": int(len(res.clusters)), "null_seconds": round(seconds, 2),
                        "n_extent_clusters": int(res.extent_labels.max()),
                        "n_experiments": exps.n_experiments}, res)


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


def run_macm_stage(ctx: RunContext, job: StudysetJob, csale_res) -> StageResult:
    """MACM: experiments of the reference database in each seed, then whole-brain ALE and
    C-SALE of that selection."""
    s, db = ctx.settings, ctx.database.experiments
    kind, seeds, reason = macm_seeds(ctx, csale_res)
    if reason:
        LOG.warning("studyset '%s': MACM skipped: %s", job.label, reason)
        return StageResult({"skipped": reason}, skipped={"macm": reason})
    done, skipped = {}, {}
    for name, seed in seeds:
        selected, in_seed = select_by_seed(db, seed, s.macm_coverage)
        sel = db.subset(selected)
        table = pd.DataFrame({"experiment_id": db.ids, "study_id": db.study_ids,
                              "n_foci": db.foci_counts(), "foci_in_seed": in_seed,
                              "sample_size": db.sample_size, "selected": selected})
        bids.write_table(job.out.table_path("experiments", name), table[table["selected"]])
        bids.write_mask(job.out.folder(name) / f"{job.out.prefix(name)}_mask.nii.gz", seed,
                        ctx.affine, {"Description": f"MACM seed ({kind})"})
        if sel.n_experiments < s.min_experiments:
            msg = (f"{sel.n_experiments} experiments selected < --min-experiments "
                   f"{s.min_experiments}")
            skipped[f"macm-{name}"] = msg
            LOG.warning("studyset '%s': MACM %s skipped: %s", job.label, name, msg)
            done[name] = {"skipped": msg}
            continue
        src = f"reference database ({', '.join(ctx.database.files)})"
        done[name] = {"n_selected": sel.n_experiments,
                      "ale": run_ale_stage(ctx, job, name, sel, ctx.brain_grid, src).summary,
                      "csale": run_csale_stage(ctx, job, name, sel, ctx.brain_grid,
                                               src).summary}
    return StageResult({"seed": kind, "seeds": done}, skipped=skipped)
