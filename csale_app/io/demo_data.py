"""Materialise the demo input folder from data that NiMARE ships (works offline).

NiMARE 0.22 ships a NeuroStore studyset of n-back and flanker contrasts (906 contrasts,
9,492 foci, parquet). The demo writes one TSV per task (study_id, contrast_id, x, y, z,
space, sample_size), keeping NeuroStore's IDs; contrasts in spaces other than MNI or
Talairach, or without a sample size, are left out (and counted in a README beside them).

    python -m csale_app.io.demo_data DEMO_INPUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..outputs.atomic import write_atomic, write_text

TASKS = {"nback": "n-back", "flanker": "flanker"}
COLUMNS = ["study_id", "contrast_id", "x", "y", "z", "space", "sample_size"]


def studyset_folder() -> Path:
    from nimare.utils import get_resource_path

    return Path(get_resource_path()) / "nback_vs_flanker_studyset_2026-07"


def write_demo_input(target: Path) -> list[Path]:
    from .read_parquet import read_parquet_studyset

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written, notes = [], []
    for label, task in TASKS.items():
        foci = read_parquet_studyset(studyset_folder(), where={"comparison_task": task})
        n_all = foci.groupby(["study_id", "contrast_id"]).ngroups
        foci = foci[foci["sample_size"] > 0]
        n_kept = foci.groupby(["study_id", "contrast_id"]).ngroups
        path = target / f"{label}.tsv"
        table = foci[COLUMNS]
        write_atomic(path, lambda p, t=table: t.to_csv(p, sep="\t", index=False))
        written.append(path)
        notes.append(
            f"- {label}.tsv: {task} contrasts, {n_kept} of {n_all} kept "
            f"({len(foci)} foci); dropped: no MNI/Talairach space or no sample size"
        )
        notes.extend(f"  - {w}" for w in foci.attrs.get("warnings", [])[:5])
    write_text(
        target / "README.md",
        "# csale_app demo input\n\nFrom NiMARE's bundled "
        "NeuroStore studyset `nback_vs_flanker_studyset_2026-07`.\n\n" + "\n".join(notes) + "\n",
    )
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = Path(argv[0]) if argv else Path("demo_input")
    for p in write_demo_input(target):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
