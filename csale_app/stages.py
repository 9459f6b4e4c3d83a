"""One function per analysis: run it through ``stats`` into an in-memory result. No maths,
no disk (checkpoints aside: the work folder's ``ChunkDir``, kept until the studyset's
results are published, so a run that fails while writing resumes without recomputing).

Each stage takes the run's :class:`~csale_app.context.RunContext` and the studyset's
:class:`~csale_app.context.StudysetJob` and returns :class:`~csale_app.results.AnalysisOutput`
(written by :mod:`csale_app.outputs.studyset_writer`). The in-memory core
(:mod:`csale_app.core`) calls :func:`run_analyses` for the Python API and the CLI alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from .context import Progress, RunContext, StudysetJob, common_sidecar
from .errors import EmptySelectionError
from .io.experiments import Experiments, rest_of_database, restrict_to_mask
from .io.terms import TermStudyset
from .io.workdir import ChunkDir
from .kernels.plan import Grid
from .kernels.spheres import active_counts, sphere_offsets
from . import names
from .records import StudysetSummary
from .results import AnalysisOutput
from .stats.ale_analysis import ALEParams, run_ale
from .stats.contributions import contributions, summarize
from .stats.csale import CSALEParams, run_csale
from .stats.mkdachi2 import mkdachi2
from .stats.selection import select_by_points, select_by_seed
from .stats.montecarlo import NullRun, computed_by
from .stats import subsamples
from .tasks import run_all
from .stats.labels import add_labels, peaks_table
from .stats.lobules import lobule_table
from .stats.lobules import sidecar as lobule_sidecar
from .stats.tables import cluster_table

LOG = logging.getLogger(__name__)


def cluster_tables(
    meta, clusters, labels, stat, grid, affine, exps, ma, side
) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Cluster table with atlas labels, peaks/sub-peaks, per-experiment contributions and,
    for a result in the cerebellum, its significant voxels per SUIT lobule."""
    clusters = add_labels(clusters, labels, grid, affine, label_column="cluster_id")
    peaks = peaks_table(stat, labels, grid, affine, value_name="ale")
    contrib = contributions(ma, labels, exps.ids, grid, exps.ijk, exps.focus_start, stat=stat)
    if len(clusters) and len(contrib):
        clusters["top_contributors"] = summarize(contrib).reindex(clusters["cluster_id"]).to_numpy()
    lobules = lobule_table(grid.to_volume(np.asarray(labels) > 0))
    extra = (
        {}
        if lobules is None
        else {names.analysis_table(meta, names.LOBULES): (lobules, {**side, **lobule_sidecar()})}
    )
    return {
        names.analysis_table(meta, "clusters"): (clusters, side),
        names.analysis_table(meta, "peaks"): (peaks, side),
        names.analysis_table(meta, "contributions"): (
            contrib,
            {
                **side,
                "Jackknife": "mean over cluster voxels of 1 - ALE without the experiment "
                "/ ALE (nimare.diagnostics.Jackknife)",
                "FocusCounter": "foci of the experiment inside the cluster",
            },
        ),
        **extra,
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
    return {
        "ComputedBy": computed_by(
            run.ledger, ctx.settings.n_iters, run.chunk_size, getattr(ctx.executor, "address", "")
        )
    }


def _tag(label: str, macm: str | None) -> str:
    return f"{label}{'-' + macm if macm else ''}"


def ale_output(
    ctx: RunContext,
    job: StudysetJob,
    macm: str | None = None,
    exps: Experiments | None = None,
    grid: Grid | None = None,
    source: str | None = None,
) -> AnalysisOutput:
    """ALE of the studyset (or, for a MACM, of the selected experiments on ``grid``)."""
    s = ctx.settings
    exps = exps or job.experiments
    grid = grid or ctx.grid
    report_mask = None if macm else ctx.report_mask
    tag = _tag(job.label, macm)
    store = ChunkDir(ctx.work_root, f"{tag}-ale-{job.digest}-c{s.chunk_size}")
    prog = Progress(s.n_iters, f"{tag} ALE null", s.quiet)
    params = ALEParams(s.n_iters, s.voxel_thresh, s.cluster_alpha, s.kernel_fwhm, s.random_seed)
    run = null_run(ctx, store, prog)
    res = run_ale(exps, grid, ctx.affine, params, run, report_mask)
    seconds = prog.close()
    extra = {
        "ClusterFormingThreshold": {"p": s.voxel_thresh, "ale": res.ss_thresh},
        "Connectivity": "faces (6-connected)",
        "NullIterations": s.n_iters,
        "AnalysisMaskVoxels": grid.n_mask,
        **ctx.extent_note(macm is not None),
        **computed_by_note(ctx, run),
    }
    if macm:
        extra["ReferenceDatabase"] = ctx.database.describe()
    side = common_sidecar(
        ctx, exps, source or job.path, "ALE with Monte Carlo FWE (Eickhoff 2012, 2016)", extra
    )
    tables = cluster_tables(
        "ale",
        res.clusters,
        res.significant_labels,
        res.observed.stat,
        grid,
        ctx.affine,
        exps,
        res.observed.ma,
        side,
    )
    null = pd.DataFrame(
        {
            "max_ale": res.null.max_stat,
            "max_cluster_size": res.null.max_cluster_size,
            "max_cluster_mass": res.null.max_cluster_mass,
        }
    )
    tables[names.analysis_table("ale", names.NULL_VALUES)] = (null, None)
    summary = {
        "n_clusters": int(len(res.clusters)),
        "ss_thresh": res.ss_thresh,
        "null_seconds": round(seconds, 2),
        "n_experiments": exps.n_experiments,
        "vfwe_threshold": float(np.percentile(res.null.max_stat, 95)),
    }
    # the MA maps (the largest arrays of a run) are not kept once the tables are made
    return AnalysisOutput(
        "ale", macm, grid, ctx.affine, res.maps, side, {}, tables, {}, summary, None
    )


def csale_output(
    ctx: RunContext,
    job: StudysetJob,
    macm: str | None = None,
    exps: Experiments | None = None,
    grid: Grid | None = None,
    source: str | None = None,
) -> AnalysisOutput:
    """C-SALE of the studyset against the run's reference database."""
    s = ctx.settings
    exps = exps or job.experiments
    grid = grid or ctx.grid
    db = ctx.database
    report_mask = None if macm else ctx.report_mask
    tag = _tag(job.label, macm)
    store = ChunkDir(ctx.work_root, f"{tag}-csale-{job.digest}-c{s.chunk_size}")
    prog = Progress(s.n_iters, f"{tag} C-SALE null", s.quiet)
    params = CSALEParams(
        s.n_iters,
        s.voxel_thresh,
        s.cluster_alpha,
        s.min_cluster_size,
        s.kernel_fwhm,
        s.random_seed,
        s.csale_null,
    )
    run = null_run(ctx, store, prog)
    res = run_csale(exps, db.experiments, grid, ctx.affine, report_mask, params, run)
    seconds = prog.close()
    side = common_sidecar(
        ctx,
        exps,
        source or job.path,
        "C-SALE: specific ALE against a base-rate null (Magielse 2025; SCALE, Langner 2014)",
        {
            "NullApproach": s.csale_null,
            "NullIterations": s.n_iters,
            "ReferenceDatabase": db.describe(),
            "VoxelP": "#(null >= observed) / n, clipped to [1/n, 1 - 1/n]",
            "SmallestPossibleP": 1.0 / s.n_iters,
            "ClusterFWE": "each permutation's p map against the other "
            "n - 1, max cluster size (faces), one streaming "
            "pass",
            "ExtentThreshold": {"p": s.voxel_thresh, "min_voxels": s.min_cluster_size},
            "AnalysisMaskVoxels": grid.n_mask,
            **ctx.extent_note(macm is not None),
            **computed_by_note(ctx, run),
        },
    )
    tables = cluster_tables(
        "csale",
        res.clusters,
        res.significant_labels,
        res.stat,
        grid,
        ctx.affine,
        exps,
        res.observed.ma,
        side,
    )
    null = pd.DataFrame({"max_ale": res.null_max, "max_cluster_size": res.null_cluster_size})
    tables[names.analysis_table("csale", names.NULL_VALUES)] = (null, None)
    extent = add_labels(
        cluster_table(res.extent_labels, res.stat, grid, ctx.affine, value_name="peak_ale"),
        res.extent_labels,
        grid,
        ctx.affine,
        label_column="label",
    ).drop(columns="label")
    tables[names.analysis_table("csale", names.EXTENT_CLUSTERS)] = (extent, side)
    maps, map_sidecars = dict(res.maps), {}
    summary_extra = {}
    if s.subsamples > 0 and macm is None:
        shares, table, summary_extra = subsample_outputs(
            ctx, tag, exps, grid, report_mask, params, res.maps[names.Z]
        )
        for name, (values, map_side) in shares.items():
            maps[name], map_sidecars[name] = values, map_side
        tables[names.analysis_table("csale", names.SUBSAMPLE_TABLE)] = table
    summary = {
        "n_clusters": int(len(res.clusters)),
        "null_seconds": round(seconds, 2),
        "n_extent_clusters": int(res.extent_labels.max()),
        "n_experiments": exps.n_experiments,
        **summary_extra,
    }
    return AnalysisOutput(
        "csale",
        macm,
        grid,
        ctx.affine,
        maps,
        side,
        map_sidecars,
        tables,
        {},
        summary,
        SignificantClusters(res.significant_labels),
    )


def subsample_outputs(
    ctx: RunContext,
    tag: str,
    exps: Experiments,
    grid: Grid,
    report_mask,
    params: CSALEParams,
    full_z: np.ndarray,
):
    """C-SALE of ``--subsamples`` random subsamples (independent units: side by side on a
    Dask cluster): ({map: (share, sidecar)}, (correlation table, sidecar), summary)."""
    s = ctx.settings
    prog = Progress(
        s.n_iters * s.subsamples,
        f"{tag} C-SALE subsamples ({s.subsamples} x {s.subsample_size:g})",
        s.quiet,
    )
    units = subsamples.subsample_units(
        exps,
        ctx.database.experiments,
        grid,
        ctx.affine,
        report_mask,
        params,
        null_run(ctx, None, prog),
        full_z,
        n_subsamples=s.subsamples,
        size=s.subsample_size,
    )
    results = run_all(ctx.executor, units)
    prog.close()
    count = len(results[0].experiments)
    where = "the ROI" if report_mask is not None else "the analysis mask"
    common = {
        "Subsamples": s.subsamples,
        "SubsampleSize": s.subsample_size,
        "ExperimentsPerSubsample": count,
        "Draw": "experiments drawn without replacement, each subsample independently",
    }
    share = subsamples.share_maps(results)
    shares = {
        names.SUBSAMPLE_EXTENT_MAP: (
            share.extent,
            {
                **common,
                "Statistic": (
                    "share of subsamples in which the voxel lies in the cluster-extent map (the "
                    f"study's rule: {where} first, p < {s.voxel_thresh:g}, faces connectivity, "
                    f"clusters of more than {s.min_cluster_size} voxels)"
                ),
            },
        ),
        names.SUBSAMPLE_FWE_MAP: (
            share.cluster_fwe,
            {
                **common,
                "Statistic": (
                    "share of subsamples in which the voxel lies in a significant cluster "
                    f"(cluster-level FWE p < {s.cluster_alpha:g}, clusters formed at "
                    f"p < {s.voxel_thresh:g} in the analysis mask, reported in {where})"
                ),
            },
        ),
    }
    table = subsamples.correlation_table(results, exps)
    r = table["pearson_r"].to_numpy(dtype=float)
    if np.isnan(r).any():
        ctx.warn(
            f"{tag}: {int(np.isnan(r).sum())} of {len(r)} subsample z maps (or the full "
            f"sample's) are constant in {where}, so their correlation is undefined (n/a)"
        )
    side = {
        **common,
        "Description": "One row per C-SALE subsample: the Pearson correlation "
        f"of its unthresholded z map with the full sample's z map inside {where}, and the "
        "voxels that survive each rule",
        "pearson_r": {
            "Description": "Pearson correlation of the subsample's "
            f"unthresholded z map with the full sample's, voxels of {where}"
        },
        "extent_voxels": {
            "Description": "voxels in the subsample's cluster-extent map",
            "Units": "voxels",
        },
        "significant_voxels": {
            "Description": "voxels in the subsample's significant clusters (cluster-level FWE)",
            "Units": "voxels",
        },
        "subsample": {"Description": "subsample number (1-based)"},
        "seed": {"Description": "seed of the subsample's permutation null"},
        "n_experiments": {"Description": "experiments in the subsample"},
        "experiment_ids": {"Description": "experiments of the subsample ('|'-separated)"},
    }
    ok = r[np.isfinite(r)]
    summary = {
        "n_subsamples": len(results),
        "subsample_experiments": count,
        "subsample_median_r": float(np.median(ok)) if len(ok) else None,
    }
    return shares, (table, side), summary


MKDACHI2_MAP_NOTES = {
    names.mkdachi2_probability(which): note
    for which, note in {
        "A": "P(A): share of all compared experiments active at the voxel",
        "AgF": "P(A|F): share of the selected experiments active at the voxel",
        "FgA": "P(F|A) = P(A|F) P(F) / P(A), P(F) = selected / all compared",
        "AgFprior": "P(A) with P(F) = --prior: prior P(A|F) + (1 - prior) P(A|~F) (NiMARE's "
        "prob_desc-AgF_prior)",
        "FgAprior": "P(F|A) with P(F) = --prior: P(A|F) prior / (prior P(A|F) + (1 - prior) "
        "P(A|~F)) (Neurosynth's posterior probability map)",
    }.items()
}


def mkdachi2_output(
    ctx: RunContext,
    grid: Grid,
    counts: np.ndarray,
    n_selected: int,
    n_rest: int,
    exps: Experiments,
    source: str,
    macm: str | None,
    comparison: dict,
) -> AnalysisOutput:
    """Neurosynth's statistics from the active counts (row 0 selected, row 1 the rest)."""
    s = ctx.settings
    res = mkdachi2(counts[0], counts[1], n_selected, n_rest, prior=s.prior, q=s.fdr_q)
    side = common_sidecar(
        ctx,
        exps,
        source,
        "MKDA chi-square: Neurosynth's uniformity and association tests (Yarkoni 2011; Wager 2007)",
        {
            "SphereRadiusMM": s.mkda_radius,
            "Prior": s.prior,
            "FDRq": s.fdr_q,
            "SelectedExperiments": n_selected,
            "UnselectedExperiments": n_rest,
            **comparison,
            "InactiveVoxels": res.n_inactive_voxels,
            "InactiveVoxelRule": "voxels where no compared experiment is "
            "active are 0 in every map (p maps: 1), "
            "Neurosynth's min_studies=1",
            "DegenerateTables": "chi2 = 0 (p = 1) where every compared "
            "experiment is active (Neurosynth's "
            "two_way gives 2)",
            "AnalysisMaskVoxels": grid.n_mask,
            "ReferenceDatabase": ctx.database.describe(),
            **ctx.extent_note(macm is not None),
        },
    )
    map_sidecars = dict((k, {"Description": v}) for k, v in MKDACHI2_MAP_NOTES.items())
    for test, what in (
        (
            "uniformity",
            "one-way chi-square of the selected experiments' "
            "active counts against their mean over the mask "
            "(forward inference, P(A|F)); sign: above/below the "
            "mean",
        ),
        (
            "association",
            "two-way chi-square (no Yates) of active/inactive x "
            "selected/rest (reverse inference, P(F|A)); sign: "
            "P(A|F) - P(A|~F)",
        ),
    ):
        for stat in names.MKDACHI2_TEST_STATS:
            map_sidecars[names.mkdachi2_test(stat, test)] = {"Description": what, "DoF": 1}
        map_sidecars[names.mkdachi2_fdr(test)] = {
            "Description": f"z of the {test} test where Benjamini-Hochberg FDR at q = "
            f"{s.fdr_q:g} over the mask keeps the voxel, else 0",
            "FDRThresholdP": res.fdr_p_threshold[test],
            "SignificantVoxels": res.n_survivors[test],
        }
    summary = {
        "n_selected": n_selected,
        "n_unselected": n_rest,
        "removed_overlap": comparison.get("RemovedOverlap"),
        "fdr_p_threshold": res.fdr_p_threshold,
        "n_fdr_voxels": res.n_survivors,
        "n_inactive_voxels": res.n_inactive_voxels,
    }
    return AnalysisOutput(
        "mkdachi2", macm, grid, ctx.affine, res.maps, side, map_sidecars, {}, {}, summary, None
    )


def mkdachi2_studyset(ctx: RunContext, job: StudysetJob) -> AnalysisOutput:
    """The studyset's experiments against the database's other experiments (matched by
    study and contrast id), on the run's analysis mask."""
    s, db = ctx.settings, ctx.database.experiments
    rest, n_removed = rest_of_database(db, job.experiments)
    others = db.subset(rest)
    if ctx.roi is not None:  # both groups: experiments with a focus in the analysis mask
        others = restrict_to_mask(others, ctx.grid.mask)
    if others.n_experiments == 0:
        raise EmptySelectionError(
            f"studyset '{job.label}': the reference database holds no experiment outside "
            f"the studyset ({n_removed} of {db.n_experiments} are in it)"
        )
    offsets = sphere_offsets(s.mkda_radius, ctx.affine)
    exps = job.experiments
    a = active_counts(
        exps.ijk,
        exps.focus_start,
        np.zeros(exps.n_experiments, np.int64),
        1,
        ctx.grid.mask,
        offsets,
    )[0]
    b = active_counts(
        others.ijk,
        others.focus_start,
        np.zeros(others.n_experiments, np.int64),
        1,
        ctx.grid.mask,
        offsets,
    )[0]
    comparison = {
        "Comparison": "the studyset's experiments against the reference "
        "database's experiments that are not in the studyset",
        "RemovedOverlap": n_removed,
        "RemovedOverlapRule": "a database experiment sharing the study id and a "
        "contrast id with a studyset experiment",
    }
    if ctx.roi is not None:
        comparison["Restriction"] = (
            "both groups: experiments with a focus in the analysis "
            "mask, foci outside it unused (as ALE/C-SALE of an ROI)"
        )
    if n_removed:
        LOG.info(
            "studyset '%s' mkdachi2: %d database experiments are in the studyset and "
            "were left out of the rest",
            job.label,
            n_removed,
        )
    return mkdachi2_output(
        ctx,
        ctx.grid,
        np.stack([a, b]),
        exps.n_experiments,
        others.n_experiments,
        exps,
        job.path,
        None,
        comparison,
    )


def mkdachi2_macm(
    ctx: RunContext, selected: np.ndarray, sel: Experiments, source: str, name: str
) -> AnalysisOutput:
    """A MACM seed's selection against the rest of the database, whole brain."""
    db = ctx.database.experiments
    counts = active_counts(
        db.ijk,
        db.focus_start,
        np.where(selected, 0, 1),
        2,
        ctx.brain_grid.mask,
        sphere_offsets(ctx.settings.mkda_radius, ctx.affine),
    )
    return mkdachi2_output(
        ctx,
        ctx.brain_grid,
        counts,
        int(selected.sum()),
        int((~selected).sum()),
        sel,
        source,
        name,
        {
            "Comparison": "the experiments the seed selects against the "
            "rest of the reference database (Neurosynth's "
            "coactivation)"
        },
    )


def macm_seeds(ctx: RunContext, csale_res):
    """(kind, [(label, seed mask on the template grid, seed points or None)],
    reason-if-none) for --macm-seed; points: the --roi-coords of a coordinate seed."""
    s, roi, grid = ctx.settings, ctx.roi, ctx.grid
    kind = s.macm_seed or ("clusters" if csale_res is not None else "roi")
    if kind == "roi":
        if roi is None:
            return kind, [], "no ROI given (--roi, --roi-coords or INPUT_DIR/roi.nii.gz)"
        return kind, [(roi.label, roi.mask, s.roi_coords or None)], None
    if csale_res is None:
        return kind, [], f"--macm-seed {kind} needs C-SALE results (add csale to --analyses)"
    labels = csale_res.significant_labels
    if labels.max() == 0:
        return kind, [], "C-SALE found no significant cluster to seed the MACM"
    if kind == "clusters":
        return kind, [("clusters", grid.to_volume(labels > 0), None)], None
    return (
        kind,
        [(f"cluster{k}", grid.to_volume(labels == k), None) for k in range(1, labels.max() + 1)],
        None,
    )


def seed_selection(ctx: RunContext, seed: np.ndarray, points) -> tuple[np.ndarray, np.ndarray, str]:
    """(selected, foci-in-seed counts, rule) of a MACM seed: with --macm-coverage, spheres
    covering more than that share of the seed; a coordinate seed, a focus within
    --roi-radius of a point; an image seed, a focus in the seed."""
    s, db = ctx.settings, ctx.database.experiments
    if s.macm_coverage is not None:
        selected, counts = select_by_seed(
            db, seed, s.macm_coverage, sphere_offsets(s.mkda_radius, ctx.affine)
        )
        return (
            selected,
            counts,
            (
                f"{s.mkda_radius:g} mm spheres around the foci cover more "
                f"than {s.macm_coverage:g} of the seed"
            ),
        )
    if points is not None:
        selected, counts = select_by_points(db, points, s.roi_radius)
        return selected, counts, f"a focus within {s.roi_radius:g} mm of a seed point"
    selected, counts = select_by_seed(db, seed)
    return selected, counts, "a focus in the seed"


def macm_outputs(
    ctx: RunContext, job: StudysetJob, csale_res
) -> tuple[list[AnalysisOutput], dict, dict]:
    """MACM: experiments of the reference database in each seed, then whole-brain ALE,
    C-SALE and MKDA chi-square (the selection against the rest) of that selection.
    Returns (outputs, summary, skipped)."""
    s, db = ctx.settings, ctx.database.experiments
    kind, seeds, reason = macm_seeds(ctx, csale_res)
    if reason:
        LOG.warning("studyset '%s': MACM skipped: %s", job.label, reason)
        return [], {"skipped": reason}, {"macm": reason}

    def one_seed(name, seed, points):
        selected, in_seed, rule = seed_selection(ctx, seed, points)
        sel = db.subset(selected)
        table = pd.DataFrame(
            {
                "experiment_id": db.ids,
                "study_id": db.study_ids,
                "n_foci": db.foci_counts(),
                "foci_in_seed": in_seed,
                "sample_size": db.sample_size,
                "selected": selected,
            }
        )
        found = [
            AnalysisOutput(
                "seed",
                name,
                ctx.brain_grid,
                ctx.affine,
                tables={
                    names.MACM_EXPERIMENTS: (
                        table[table["selected"]].reset_index(drop=True),
                        {"SelectionRule": rule},
                    )
                },
                masks={
                    names.seed_mask_filename(job.label, name): (
                        seed,
                        {"Description": f"MACM seed ({kind})"},
                    )
                },
            )
        ]
        if sel.n_experiments < s.min_experiments:
            msg = (
                f"{sel.n_experiments} experiments selected < --min-experiments {s.min_experiments}"
            )
            LOG.warning("studyset '%s': MACM %s skipped: %s", job.label, name, msg)
            return found, {"skipped": msg}, msg
        src = f"reference database ({', '.join(ctx.database.files)})"
        ale = ale_output(ctx, job, name, sel, ctx.brain_grid, src)
        csale = csale_output(ctx, job, name, sel, ctx.brain_grid, src)
        summary = {
            "n_selected": sel.n_experiments,
            "selection": rule,
            "ale": ale.summary,
            "csale": csale.summary,
        }
        if sel.n_experiments == db.n_experiments:
            msg = "the seed selects every experiment of the database: nothing to compare"
            LOG.warning("studyset '%s': MACM %s: MKDA chi-square skipped: %s", job.label, name, msg)
            return found + [ale, csale], {**summary, "mkdachi2": {"skipped": msg}}, None
        chi2 = mkdachi2_macm(ctx, selected, sel, src, name)
        return found + [ale, csale, chi2], {**summary, "mkdachi2": chi2.summary}, None

    # seeds are independent: side by side on a Dask cluster (csale_app.tasks)
    units = [partial(one_seed, name, seed, points) for name, seed, points in seeds]
    outputs, done, skipped = [], {}, {}
    for (name, _, _), (found, summary, msg) in zip(seeds, run_all(ctx.executor, units)):
        outputs += found
        done[name] = summary
        if msg:
            skipped[f"macm-{name}"] = msg
    return outputs, {"seed": kind, "seeds": done}, skipped


def run_analyses(
    ctx: RunContext, job: StudysetJob, extra: dict | None = None
) -> tuple[list[AnalysisOutput], StudysetSummary]:
    """Every analysis of ``ctx.settings.analyses`` for one studyset: (outputs, summary).
    ``extra``: what the run knows beyond the studyset (``{"roi": Pipeline.roi_summary}``)."""
    s = ctx.settings
    exps = job.experiments
    unknown = set(extra or {}) - {"roi"}
    if unknown:
        raise TypeError(f"run_analyses: unknown extra fact(s) {sorted(unknown)}")
    analyses: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    outputs: list[AnalysisOutput] = []
    csale = None
    if "ale" in s.analyses:
        ale = ale_output(ctx, job)
        outputs.append(ale)
        analyses["ale"] = ale.summary
    if "csale" in s.analyses:
        csale = csale_output(ctx, job)
        outputs.append(csale)
        analyses["csale"] = csale.summary
    if "mkdachi2" in s.analyses:
        try:
            chi2 = mkdachi2_studyset(ctx, job)
        except EmptySelectionError as exc:
            reason = exc.one_line()
            LOG.warning("%s", reason)
            skipped["mkdachi2"] = reason
        else:
            outputs.append(chi2)
            analyses["mkdachi2"] = chi2.summary
    if "macm" in s.analyses:
        macm, macm_summary, macm_skipped = macm_outputs(
            ctx, job, csale.raw if csale is not None else None
        )
        outputs += macm
        analyses["macm"] = macm_summary
        skipped.update(macm_skipped)
    database = None
    if ctx.database is not None:
        database = {
            **ctx.database.describe(),
            "same_as_studyset": ctx.database.is_only(job.source_digest),
        }
    summary = StudysetSummary(
        label=job.label,
        source=str(job.path),
        n_experiments=exps.n_experiments,
        n_foci=exps.n_foci,
        analyses=analyses,
        skipped=skipped,
        database=database,
        roi=(extra or {}).get("roi"),
        term=job.path.summary() if isinstance(job.path, TermStudyset) else None,
    )
    return outputs, summary
