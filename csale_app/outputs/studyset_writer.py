"""Writing one studyset's results: the only way an analysis reaches the disk.

:func:`write_studyset` stages every file of a studyset and publishes its folder in one
rename; the pipeline and :meth:`csale_app.results.MetaResult.to_bids` both call it, so the
CLI and the Python API cannot write different files. :func:`reusable` is the reuse rule's
check of what OUTPUT_DIR already holds.

The records written (``RunContext``, ``StudysetJob``, ``AnalysisOutput``) are read by
attribute only: this layer imports nothing above it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .._version import __version__
from ..errors import OutputError
from ..io.terms import TermStudyset
from .. import names
from ..records import RunRecord, StudysetSummary
from . import bids

LOG = logging.getLogger(__name__)


def write_output(out: bids.StudysetOutput, o) -> None:
    """Write one analysis output (``results.AnalysisOutput``) into a studyset's staging
    folder."""
    for name, values in o.maps.items():
        bids.write_map(
            out.map_path(o.meta, name, o.macm),
            values,
            o.grid,
            o.affine,
            {**o.sidecar, "Statistic": name, **o.map_sidecars.get(name, {})},
        )
    for part, (df, side) in o.tables.items():
        bids.write_table(out.table_path(part, o.macm), df, side)
    for filename, (vol, side) in o.masks.items():
        bids.write_mask(out.folder(o.macm) / filename, vol, o.affine, side)


def reusable(output_dir: Path, label: str, digest: str, overwrite: bool) -> bool:
    """True when OUTPUT_DIR holds this studyset's finished results for ``digest``; other
    results there are refused (exit 73) unless ``overwrite``."""
    final = Path(output_dir) / f"studyset-{label}"
    if not final.exists():
        return False
    prov = bids.read_provenance(final)
    if prov and prov.get("digest") == digest:
        LOG.info(
            "studyset '%s': finished results with the same inputs and settings found; reusing them",
            label,
        )
        return True
    if not overwrite:
        raise OutputError(
            f"{final}: holds results of other inputs or settings; use "
            "--overwrite to replace them or choose another OUTPUT_DIR"
        )
    return False


def write_studyset(output_dir: Path, ctx, job, outputs: list, summary: StudysetSummary) -> None:
    """Stage every file of one studyset (``job``: a ``context.StudysetJob``; ``ctx``: the
    run's ``context.RunContext``) and publish the folder in one rename."""
    out = bids.StudysetOutput(output_dir, job.label)
    try:
        exps = job.experiments
        bids.write_table(
            out.table_path(names.INPUT_FOCI),
            exps.foci,
            {
                "Description": "Parsed foci with original IDs; x/y/z as given, x_mni/y_mni/"
                "z_mni after Talairach to MNI conversion (tal2icbm) where needed",
                "Source": str(job.path),
            },
        )
        bids.write_table(out.table_path(names.EXPERIMENTS_TABLE), exps.table)
        if isinstance(job.path, TermStudyset):
            bids.write_table(
                out.table_path(names.TERM_STUDIES),
                job.path.table(ctx.database.experiments.table),
                job.path.sidecar(exps.n_experiments),
            )
        roi = ctx.roi
        if roi is not None:
            bids.write_mask(
                out.folder() / names.roi_mask_filename(job.label, roi.label),
                roi.mask,
                ctx.affine,
                {
                    "Description": roi.description,
                    "Source": roi.source,
                    "Voxels": roi.n_voxels,
                    "VoxelsDroppedOutsideBrainMask": roi.n_outside_brain,
                },
            )
        for o in outputs:
            write_output(out, o)
        out.commit(
            RunRecord(job.digest, ctx.settings.result_params(), summary, __version__).to_json()
        )
    except BaseException:
        out.discard()
        raise


def write_result(
    output_dir: Path, overwrite: bool, *, ctx, job, outputs: list, summary: StudysetSummary
) -> Path:
    """One studyset's results into a BIDS derivatives folder of its own (what
    ``MetaResult.to_bids`` writes): lock, dataset description, the studyset folder."""
    output_dir = Path(output_dir)
    lock = bids.prepare_output_dir(output_dir, [job.label])
    try:
        bids.write_dataset_description(output_dir, ctx.settings.authors)
        if not reusable(output_dir, job.label, job.digest, overwrite):
            write_studyset(output_dir, ctx, job, outputs, summary)
        bids.write_dataset_description(output_dir, ctx.settings.authors)  # with this one
    finally:
        if lock is not None:
            lock.release()
    return output_dir / f"studyset-{job.label}"
