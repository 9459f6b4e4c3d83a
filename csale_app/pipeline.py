"""Orchestration: find studysets, read them, run the analyses, write outputs. No maths here."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from . import __version__, interrupt
from .errors import EmptySelectionError, MissingInputError, OutputError
from .io.experiments import Experiments, build_experiments, restrict_to_mask, select_by_seed
from .io.readers import find_studysets, read_studyset, study_label
from .io.roi import ROI, dilate, load_roi
from .io.templates import SPACE, load_brain_mask
from .io.workdir import ChunkDir
from .kernels.device import select_backend
from .kernels.plan import Grid, build_grid
from .outputs import bids
from .settings import Settings

LOG = logging.getLogger("csale_app")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    paths = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


class Progress:
    """Permutation progress on stderr (tqdm), silenced by --quiet; rate and ETA in the log."""

    def __init__(self, total: int, desc: str, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="it", disable=quiet, leave=False,
                        dynamic_ncols=True)
        self.t0 = time.perf_counter()
        self.done = 0
        self.total = total
        self.desc = desc

    def __call__(self, n: int) -> None:
        interrupt.checkpoint()  # a SIGTERM stops between chunks, never inside compiled code
        self.done += n
        self.bar.update(n)
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        LOG.debug("%s: %d/%d permutations, %.1f it/s, ETA %.0f s", self.desc, self.done,
                  self.total, rate, (self.total - self.done) / max(rate, 1e-9))

    def close(self) -> float:
        self.bar.close()
        elapsed = time.perf_counter() - self.t0
        LOG.info("%s: %d permutations in %.1f s (%.1f it/s)", self.desc, self.done, elapsed,
                 self.done / max(elapsed, 1e-9))
        return elapsed


def common_sidecar(settings: Settings, exps: Experiments, backend, source: Path,
                   method: str, extra: dict | None = None) -> dict:
    side = {
        "Method": method,
        "Software": bids.software_versions(),
        "Space": SPACE,
        "Parameters": settings.result_params(),
        "RandomSeed": settings.random_seed,
        "Device": backend.describe(),
        "NumberOfExperiments": exps.n_experiments,
        "NumberOfFoci": exps.n_foci,
        "NumberOfSubjects": (int(np.nansum(exps.sample_size))
                             if not np.all(np.isnan(exps.sample_size)) else None),
        "Sources": [str(source)],
    }
    if extra:
        side.update(extra)
    return side


class Pipeline:
    def __init__(self, settings: Settings, input_dir: Path, output_dir: Path):
        self.s = settings
        self.input_dir = Path(input_dir)
        self.output_dir = Path(output_dir)
        self.warnings: list[str] = []
        self.summaries: list[dict] = []
        self.command_line = ""
        self.on_output_ready = lambda: None
        self.t_start = time.perf_counter()

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        LOG.warning(message)

    # ---- inputs -------------------------------------------------------------------------
    def check_paths(self) -> None:
        if not self.input_dir.is_dir():
            raise MissingInputError(f"{self.input_dir}: input folder does not exist or is not a folder")
        inp = self.input_dir.resolve()
        out = self.output_dir.resolve()
        if out == inp or inp in out.parents:
            raise OutputError(f"{self.output_dir}: the output folder must not be the input folder "
                              "or inside it (inputs are never written)")

    def select_studysets(self) -> list[tuple[str, Path]]:
        files = find_studysets(self.input_dir)
        labelled = [(study_label(f), f) for f in files]
        if self.s.studyset_labels:
            wanted = set(self.s.studyset_labels)
            unknown = wanted - {lab for lab, _ in labelled}
            if unknown:
                raise EmptySelectionError(
                    f"{self.input_dir}: no studyset labelled {', '.join(sorted(unknown))} "
                    f"(found: {', '.join(lab for lab, _ in labelled) or 'none'})")
            labelled = [(lab, f) for lab, f in labelled if lab in wanted]
        if not labelled:
            raise EmptySelectionError(f"{self.input_dir}: no coordinate tables found "
                                      "(.txt, .tsv, .csv, .json)")
        return labelled

    def load_experiments(self, path: Path, affine, shape) -> Experiments:
        foci = read_studyset(path)
        for w in foci.attrs.get("warnings", []):
            self.warn(w)
        exps = build_experiments(foci, affine, shape, merge_contrasts=self.s.merge_contrasts,
                                 kernel_fwhm=self.s.kernel_fwhm)
        for w in exps.warnings:
            self.warn(f"{path.name}: {w}")
        return exps

    def load_database(self, studysets, affine, shape) -> tuple[Experiments, list[str]]:
        """Reference database: --database, else INPUT_DIR/database/, else the union."""
        import pandas as pd

        if self.s.database:
            src = Path(self.s.database)
            if not src.exists():
                raise MissingInputError(f"{src}: --database does not exist")
            files = find_studysets(src) if src.is_dir() else [src]
        elif (self.input_dir / "database").is_dir():
            files = find_studysets(self.input_dir / "database")
        else:
            files = [f for _, f in studysets]
        frames, seen = [], set()
        for f in files:
            frame = read_studyset(f)
            keep = []
            # an experiment listed in several files (same IDs and foci) counts once; repeated
            # foci within one experiment are kept, as NiMARE keeps them
            for key, grp in frame.groupby(["study_id", "contrast_id"], sort=False):
                sig = (key, tuple(sorted(map(tuple, grp[["x", "y", "z"]].to_numpy().round(3)))))
                if sig not in seen:
                    seen.add(sig)
                    keep.append(grp)
            if keep:
                frames.append(pd.concat(keep))
        foci = pd.concat(frames, ignore_index=True)
        db = build_experiments(foci, affine, shape, merge_contrasts=self.s.merge_contrasts,
                               kernel_fwhm=self.s.kernel_fwhm)
        LOG.info("reference database: %d experiments, %d foci from %d file(s)",
                 db.n_experiments, db.n_foci, len(files))
        return db, [str(f) for f in files]

    # ---- run ----------------------------------------------------------------------------
    def run(self) -> list[dict]:
        self.check_paths()
        studysets = self.select_studysets()
        mask_img = load_brain_mask(self.s.brain_mask)
        affine = mask_img.affine
        brain = np.asanyarray(mask_img.dataobj) > 0
        roi = load_roi(self.s.roi, self.s.roi_coords, self.s.roi_radius, mask_img, brain,
                       self.input_dir)
        if roi is not None:
            for w in roi.warnings:
                self.warn(w)
            analysis_mask = dilate(roi.mask, self.s.roi_dilation_mm, 2.0, brain)
        else:
            analysis_mask = brain
        loaded = []
        for label, path in studysets:
            exps = self.load_experiments(path, affine, brain.shape)
            if roi is not None:
                exps = restrict_to_mask(exps, analysis_mask)
            if exps.n_experiments < self.s.min_experiments:
                self.warn(f"studyset '{label}' skipped: {exps.n_experiments} experiments "
                          f"{'with foci in the analysis mask ' if roi is not None else ''}"
                          f"< --min-experiments {self.s.min_experiments}")
                continue
            if exps.n_experiments < 20:
                self.warn(f"studyset '{label}': only {exps.n_experiments} experiments; ALE "
                          "needs about 20 or more to be reliable (Eickhoff et al. 2016)")
            loaded.append((label, path, exps))
        if not loaded:
            raise EmptySelectionError(f"{self.input_dir}: no studyset has at least "
                                      f"--min-experiments {self.s.min_experiments} experiments")
        db, db_files = (None, [])
        if {"csale", "macm"} & set(self.s.analyses):
            db, db_files = self.load_database(studysets, affine, brain.shape)
        bids.prepare_output_dir(self.output_dir)
        self.on_output_ready()
        bids.write_dataset_description(self.output_dir)
        backend = select_backend(self.s.device, self.s.gpu_id, self.s.nprocs, self.s.batch_size)
        LOG.info("compute device: %s", backend.describe())
        if getattr(backend, "fallback_reason", None):
            LOG.info("no GPU used: %s", backend.fallback_reason)
        if backend.name == "cuda":
            if self.s.mem_gb:
                backend.mem_limit_bytes = self.s.mem_gb * 2**30
            # GPU batches are large; checkpoints every 4,096 permutations are frequent enough
            self.s = replace(self.s, chunk_size=max(self.s.chunk_size, 4096))
        self.backend = backend
        ctx = {"affine": affine, "brain": brain, "roi": roi, "grid": build_grid(analysis_mask),
               "brain_grid": build_grid(brain) if roi is not None else None, "db": db,
               "db_files": db_files, "backend": backend,
               "work_root": Path(self.s.work_dir) if self.s.work_dir
               else self.output_dir / ".csale_work"}
        if ctx["brain_grid"] is None:
            ctx["brain_grid"] = ctx["grid"]
        for label, path, exps in loaded:
            interrupt.checkpoint()
            self.run_studyset(label, path, exps, ctx)
        self.write_report(backend)
        try:
            ctx["work_root"].rmdir()  # only if empty: checkpoints are removed per analysis
        except OSError:
            pass
        return self.summaries

    def write_report(self, backend) -> None:
        from .report.build import build_report

        context = {
            "version": __version__,
            "command_line": self.command_line,
            "settings": asdict(self.s),
            "device": backend.describe(),
            "runtime_s": round(time.perf_counter() - self.t_start, 1),
            "warnings": self.warnings,
            "studysets": self.summaries,
            "input_dir": str(self.input_dir),
            "output_dir": str(self.output_dir),
        }
        path = build_report(self.output_dir, context)
        LOG.info("report: %s", path)

    def run_studyset(self, label: str, path: Path, exps: Experiments, ctx: dict) -> None:
        digest = self.s.digest(file_digest(path), *ctx["db_files"], __version__,
                               *[file_digest(Path(f)) for f in ctx["db_files"]])
        final = self.output_dir / f"studyset-{label}"
        if final.exists():
            prov = bids.read_provenance(final)
            if prov and prov.get("digest") == digest:
                LOG.info("studyset '%s': finished results with the same inputs and settings "
                         "found; reusing them", label)
                self.summaries.append(prov.get("summary", {"label": label}))
                return
            if not self.s.overwrite:
                raise OutputError(f"{final}: holds results of other inputs or settings; use "
                                  "--overwrite to replace them or choose another OUTPUT_DIR")
        out = bids.StudysetOutput(self.output_dir, label)
        try:
            t0 = time.perf_counter()
            summary = {"label": label, "source": str(path), "n_experiments": exps.n_experiments,
                       "n_foci": exps.n_foci, "analyses": {}, "skipped": {}}
            bids.write_table(out.table_path("desc-input_foci"), exps.foci, {
                "Description": "Parsed foci with original IDs; x/y/z as given, x_mni/y_mni/"
                               "z_mni after Talairach to MNI conversion (tal2icbm) where needed",
                "Source": str(path)})
            bids.write_table(out.table_path("desc-experiments_table"), exps.table)
            roi: ROI | None = ctx["roi"]
            if roi is not None:
                bids.write_mask(out.folder() / f"{out.prefix()}_roi-{roi.label}_mask.nii.gz",
                                roi.mask, ctx["affine"], {"Description": roi.description,
                                                          "Source": roi.source})
            from .stages import run_ale_stage, run_csale_stage, run_macm_stage

            if "ale" in self.s.analyses:
                summary["analyses"]["ale"] = run_ale_stage(self, label, path, exps, ctx, out, digest)
            csale_res = None
            if "csale" in self.s.analyses:
                summary["analyses"]["csale"], csale_res = run_csale_stage(
                    self, label, path, exps, ctx, out, digest)
            if "macm" in self.s.analyses:
                summary["analyses"]["macm"] = run_macm_stage(self, label, exps, ctx, out, digest,
                                                             csale_res, summary["skipped"])
            summary["runtime_s"] = round(time.perf_counter() - t0, 2)
            out.commit({"digest": digest, "settings": self.s.result_params(),
                        "summary": summary, "version": __version__})
        except BaseException:
            out.discard()
            raise
        self.summaries.append(summary)
