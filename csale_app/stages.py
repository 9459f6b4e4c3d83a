"""One function per analysis: run it through ``stats`` and write its outputs. No maths."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .io.experiments import select_by_seed
from .io.workdir import ChunkDir
from .outputs import bids
from .stats.ale_analysis import run_ale
from .stats.contributions import contributions, summarize
from .stats.csale import run_csale, subsample_share
from .stats.labels import add_labels, peaks_table

LOG = logging.getLogger("csale_app")


def _sidecar(pipe, exps, path, method, extra):
    from .pipeline import common_sidecar

    return common_sidecar(pipe.s, exps, pipe.backend, path, method, extra)


def _progress(pipe, total, desc):
    from .pipeline import Progress

    return Progress(total, desc, pipe.s.quiet)


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


def write_ale(out, res, grid, affine, side, exps, macm=None):
    for name, values in res.maps.items():
        bids.write_map(out.map_path("ale", name, macm), values, grid, affine,
                       {**side, "Statistic": name})
    write_cluster_tables(out, "ale", res.clusters, res.significant_labels, res.observed.stat,
                         grid, affine, exps, res.observed.ma, side, macm)
    null = pd.DataFrame({"max_ale": res.null["max"], "max_cluster_size": res.null["size"],
                         "max_cluster_mass": res.null["mass"]})
    bids.write_table(out.table_path("meta-ale_desc-null_values", macm), null)


def run_ale_stage(pipe, label, path, exps, ctx, out, digest, macm=None, grid=None):
    s = pipe.s
    grid = grid or ctx["grid"]
    tag = f"{label}{'-' + macm if macm else ''}"
    store = ChunkDir(ctx["work_root"], f"{tag}-ale-{digest}-c{s.chunk_size}")
    prog = _progress(pipe, s.n_iters, f"{tag} ALE null")
    res = run_ale(exps, grid, ctx["affine"], n_iters=s.n_iters, voxel_thresh=s.voxel_thresh,
                  cluster_alpha=s.cluster_alpha, kernel_fwhm=s.kernel_fwhm,
                  seed=s.random_seed, backend=ctx["backend"], chunk_size=s.chunk_size,
                  store=store, progress=prog)
    seconds = prog.close()
    side = _sidecar(pipe, exps, path, "ALE with Monte Carlo FWE (Eickhoff 2012, 2016)", {
        "ClusterFormingThreshold": {"p": s.voxel_thresh, "ale": res.ss_thresh},
        "Connectivity": "faces (6-connected)", "NullIterations": s.n_iters,
        "AnalysisMaskVoxels": grid.n_mask})
    write_ale(out, res, grid, ctx["affine"], side, exps, macm)
    store.remove()
    return {"n_clusters": int(len(res.clusters)), "ss_thresh": res.ss_thresh,
            "null_seconds": round(seconds, 2), "n_experiments": exps.n_experiments,
            "vfwe_threshold": float(np.percentile(res.null["max"], 95))}


def run_csale_stage(pipe, label, path, exps, ctx, out, digest, macm=None, grid=None,
                    report_mask=None, db=None):
    s = pipe.s
    grid = grid or ctx["grid"]
    db = db or ctx["db"]
    roi = ctx["roi"]
    if report_mask is None and roi is not None and macm is None:
        report_mask = roi.mask[grid.mask]
    tag = f"{label}{'-' + macm if macm else ''}"
    store = ChunkDir(ctx["work_root"], f"{tag}-csale-{digest}-c{s.chunk_size}")
    prog = _progress(pipe, s.n_iters, f"{tag} C-SALE null")
    res = run_csale(exps, db, grid, ctx["affine"], report_mask, n_iters=s.n_iters,
                    voxel_thresh=s.voxel_thresh, cluster_alpha=s.cluster_alpha,
                    min_cluster_size=s.min_cluster_size, kernel_fwhm=s.kernel_fwhm,
                    seed=s.random_seed, null_kind=s.csale_null, backend=ctx["backend"],
                    chunk_size=s.chunk_size, store=store, progress=prog)
    seconds = prog.close()
    side = _sidecar(pipe, exps, path, "C-SALE: specific ALE against a base-rate null "
                    "(Magielse 2025; SCALE, Langner 2014)", {
                        "NullApproach": s.csale_null, "NullIterations": s.n_iters,
                        "ReferenceDatabase": {"files": ctx["db_files"],
                                              "experiments": db.n_experiments,
                                              "foci": db.n_foci},
                        "VoxelP": "#(null >= observed) / n, clipped to [1/n, 1 - 1/n]",
                        "ClusterFWE": "each permutation's p map against the other n - 1, "
                                      "max cluster size (faces), one streaming pass",
                        "ExtentThreshold": {"p": s.voxel_thresh, "min_voxels": s.min_cluster_size},
                        "AnalysisMaskVoxels": grid.n_mask})
    for name, values in res.maps.items():
        bids.write_map(out.map_path("csale", name, macm), values, grid, ctx["affine"],
                       {**side, "Statistic": name})
    write_cluster_tables(out, "csale", res.clusters, res.significant_labels, res.stat, grid,
                         ctx["affine"], exps, res.observed.ma, side, macm)
    null = pd.DataFrame({"max_ale": res.null_max, "max_cluster_size": res.null_cluster_size})
    bids.write_table(out.table_path("meta-csale_desc-null_values", macm), null)
    store.remove()
    if s.subsamples > 0 and macm is None:
        prog = _progress(pipe, s.n_iters * s.subsamples,
                         f"{tag} C-SALE subsamples ({s.subsamples} x {s.subsample_fraction:g})")
        share = subsample_share(
            exps, db, grid, ctx["affine"], report_mask, n_subsamples=s.subsamples,
            fraction=s.subsample_fraction, seed=s.random_seed, progress=prog,
            n_iters=s.n_iters, voxel_thresh=s.voxel_thresh, cluster_alpha=s.cluster_alpha,
            min_cluster_size=s.min_cluster_size, kernel_fwhm=s.kernel_fwhm,
            null_kind=s.csale_null, backend=ctx["backend"], chunk_size=s.chunk_size)
        prog.close()
        bids.write_map(out.map_path("csale", "stat-prob_desc-subsamples", macm), share, grid,
                       ctx["affine"], {**side, "Statistic": "share of subsamples in which the "
                                       "voxel lies in a significant cluster (cluster-FWE)",
                                       "Subsamples": s.subsamples,
                                       "SubsampleFraction": s.subsample_fraction})
    return ({"n_clusters": int(len(res.clusters)), "null_seconds": round(seconds, 2),
             "n_extent_clusters": int(res.extent_labels.max()),
             "n_experiments": exps.n_experiments}, res)


def macm_seeds(pipe, ctx, csale_res):
    """(label, seed mask on the template grid) pairs for --macm-seed."""
    s, roi, grid = pipe.s, ctx["roi"], ctx["grid"]
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
    return kind, [(f"cluster{k}", grid.to_volume(labels == k)) for k in range(1, labels.max() + 1)], None


def run_macm_stage(pipe, label, exps, ctx, out, digest, csale_res, skipped):
    s, db = pipe.s, ctx["db"]
    kind, seeds, reason = macm_seeds(pipe, ctx, csale_res)
    done = {}
    if reason:
        skipped["macm"] = reason
        LOG.warning("studyset '%s': MACM skipped: %s", label, reason)
        return {"skipped": reason}
    for name, seed in seeds:
        selected, in_seed = select_by_seed(db, seed, s.macm_coverage)
        sel = db.subset(selected)
        table = pd.DataFrame({"experiment_id": db.ids, "study_id": db.study_ids,
                              "n_foci": db.foci_counts(), "foci_in_seed": in_seed,
                              "sample_size": db.sample_size, "selected": selected})
        bids.write_table(out.table_path("experiments", name), table[table["selected"]])
        bids.write_mask(out.folder(name) / f"{out.prefix(name)}_mask.nii.gz", seed,
                        ctx["affine"], {"Description": f"MACM seed ({kind})"})
        if sel.n_experiments < s.min_experiments:
            msg = (f"{sel.n_experiments} experiments selected < --min-experiments "
                   f"{s.min_experiments}")
            skipped[f"macm-{name}"] = msg
            LOG.warning("studyset '%s': MACM %s skipped: %s", label, name, msg)
            done[name] = {"skipped": msg}
            continue
        src = f"reference database ({', '.join(ctx['db_files'])})"
        done[name] = {"n_selected": sel.n_experiments,
                      "ale": run_ale_stage(pipe, label, src, sel, ctx, out, digest, macm=name,
                                           grid=ctx["brain_grid"]),
                      "csale": run_csale_stage(pipe, label, src, sel, ctx, out, digest,
                                               macm=name, grid=ctx["brain_grid"],
                                               db=db)[0]}
    return {"seed": kind, "seeds": done}
