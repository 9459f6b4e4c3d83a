"""The dataset-level files of OUTPUT_DIR: dataset_description.json, README.md, .bidsignore and
the pybids config (code/).

They describe every studyset folder in OUTPUT_DIR, whichever run wrote it (a job array, a
rerun for more studysets, the Python API's ``to_bids``): they are rebuilt from the
provenance file of each studyset folder, at the start of a run (so an interrupted run leaves
a valid description) and after its results are in place.
"""

from __future__ import annotations

import json
import logging
import shutil
import textwrap
from importlib import metadata
from pathlib import Path

from .._version import __version__
from .atomic import write_atomic, write_json, write_text
from .. import names

LOG = logging.getLogger(__name__)
#: The BIDS version whose rules the outputs follow: the schema of the pinned validator
#: (bids-validator-deno 3.0.2 checks against BIDS 1.11.1).
BIDS_VERSION = "1.11.1"
#: Project-URL labels (pyproject ``[project.urls]``) that name where the code is, in order.
CODE_URL_LABELS = ("source", "repository", "code", "homepage")
#: Validator warnings an OUTPUT_DIR keeps, and why (README.md of OUTPUT_DIR and the repo).
KNOWN_WARNINGS = {
    "SUBJECT_FOLDERS": "a meta-analysis of published coordinates has no subjects, so there "
    "is no sub-<label>/ folder",
    "TOO_FEW_AUTHORS": "Authors is written only when given (--authors); the warning stays "
    "while fewer than two are given",
}


def code_url() -> str:
    """Where the code that wrote the dataset is: the package's declared source URL, else the
    ``file://`` URI of the installed package (the code that ran, in a container the image's
    copy). Never a guessed address."""
    try:
        urls = metadata.metadata("csale-app").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    declared = {}
    for entry in urls:
        label, _, url = entry.partition(",")
        declared[label.strip().lower()] = url.strip()
    for label in CODE_URL_LABELS:
        if declared.get(label):
            return declared[label]
    return Path(__file__).resolve().parents[1].as_uri()


def studyset_provenance(output_dir: Path) -> list[dict]:
    """The provenance of every finished studyset folder in OUTPUT_DIR, by label."""
    from .bids import read_provenance

    found = []
    for folder in sorted(Path(output_dir).glob("studyset-*")):
        prov = read_provenance(folder) if folder.is_dir() else None
        if prov:
            found.append(prov)
    return found


def input_files(provenance: list[dict]) -> list[Path]:
    """Every input file the studysets were computed from (studysets, database, ROI file)."""
    paths: list[str] = []
    for prov in provenance:
        summary = prov.get("summary", {})
        paths.append(summary.get("source"))
        paths.extend((summary.get("database") or {}).get("paths", []))
        settings = prov.get("settings", {})
        paths.extend([settings.get("roi"), settings.get("database")])
    out = []
    for p in paths:
        if not p:
            continue
        path = Path(p)
        # only files: a built-in ROI is a name, an in-memory studyset (Python API) a
        # description such as "pandas DataFrame (120 rows)"
        if path.is_file() and path.resolve() not in out:
            out.append(path.resolve())
    return out


def description(output_dir: Path, provenance: list[dict], authors=()) -> dict:
    from ..provenance import container_provenance

    generated = {"Name": "csale_app", "Version": __version__, "CodeURL": code_url()}
    container = container_provenance()
    if container:
        generated["Container"] = container
    desc = {
        "Name": "csale_app coordinate-based meta-analysis",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    authors = [a for a in authors if a.strip()]
    if not authors:  # keep the authors an earlier run was given
        try:
            old = json.loads((Path(output_dir) / names.DESCRIPTION).read_text())
            authors = [a for a in old.get("Authors", []) if isinstance(a, str)]
        except (OSError, ValueError, AttributeError):
            authors = []
    if authors:
        desc["Authors"] = list(authors)
    sources = [{"URL": p.as_uri()} for p in input_files(provenance)]
    if sources:
        desc["SourceDatasets"] = sources
    return desc


def _analysis_line(meta: str, info: dict) -> str:
    if not isinstance(info, dict):
        return f"  - {meta}"
    if info.get("skipped"):
        return f"  - {meta}: skipped ({info['skipped']})"
    counts = [
        f"{k.replace('n_', '').replace('_', ' ')} {v}"
        for k, v in info.items()
        if k.startswith("n_") and isinstance(v, (int, float))
    ]
    return f"  - {meta}: " + (", ".join(counts) if counts else "done")


def readme_text(provenance: list[dict], authors=()) -> str:
    """OUTPUT_DIR/README.md: what ran and how to read the folder."""
    lines = [
        "# csale_app coordinate-based meta-analysis",
        "",
        "BIDS derivative dataset written by csale_app (ALE, C-SALE and MACM "
        "coordinate-based meta-analysis). Open `report.html` for the results with "
        "figures; this file says what ran and how the folder is organised.",
        "",
    ]
    if authors:
        lines += ["Authors: " + ", ".join(authors), ""]
    lines += ["## What ran", ""]
    if not provenance:
        lines += ["No studyset has finished in this folder yet.", ""]
    for prov in provenance:
        summary = prov.get("summary", {})
        settings = prov.get("settings", {})
        label = summary.get("label", "?")
        lines.append(
            f"- `studyset-{label}/`: {summary.get('n_experiments', '?')} experiments, "
            f"{summary.get('n_foci', '?')} foci, from "
            f"`{summary.get('source', 'an in-memory studyset')}` (csale_app "
            f"{prov.get('version', '?')})"
        )
        for meta, info in (summary.get("analyses") or {}).items():
            lines.append(_analysis_line(meta, info))
        db = summary.get("database") or {}
        if db:
            lines.append(
                f"  - reference database: {db.get('source', '?')} "
                f"({db.get('n_experiments', '?')} experiments)"
            )
        roi = summary.get("roi") or {}
        lines.append(f"  - region of interest: {roi.get('label', 'none (whole brain)')}")
        keys = (
            "analyses",
            "n_iters",
            "voxel_thresh",
            "cluster_alpha",
            "random_seed",
            "subsamples",
            "macm_seed",
        )
        shown = {k: settings[k] for k in keys if settings.get(k) not in (None, [], ())}
        lines.append(
            "  - settings: "
            + ", ".join(
                f"{k}={' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                for k, v in shown.items()
            )
        )
    lines += [
        "",
        "Every setting, input file and software version is in the JSON sidecar of "
        "each map and table (`Parameters`, `Sources`, `Software`).",
        "",
        "## How to read this folder",
        "",
        "- `studyset-<S>/`: the results of studyset S (one input table). File names "
        "follow BIDS's pattern `key-value_..._suffix.extension` with these entities: "
        "`studyset`, `macm` (the MACM seed, in the subfolder `macm-<M>/`), `roi`, "
        "`space`/`res` (MNI152NLin6Asym, 2 mm), `meta` (the analysis: ale, csale, ...), "
        "`stat` (the statistic), `level`/`corr` (FWE-corrected maps), `desc`.",
        "  Suffixes: `_statmap.nii.gz` (maps), `_mask.nii.gz` (ROI and seed masks), "
        "`.tsv` tables (`_clusters`, `_peaks`, `_contributions`, `_desc-null_values`, "
        "`_desc-input_foci`, `_desc-experiments_table`, `_experiments`), each with a "
        "JSON sidecar describing it and its columns.",
        "- `report.html`: the report (offline HTML); `references.bib`: its references.",
        "- `logs/`: one log per run. `code/csale_app_pybids_config.json`: the pybids "
        "config for the entities above:",
        "",
        "```python",
        "from bids import BIDSLayout",
        f"layout = BIDSLayout(OUTPUT_DIR, config=[OUTPUT_DIR + '/{names.PYBIDS_CONFIG}'],",
        "                     validate=False)",
        "layout.get(studyset='S', meta='csale', stat='z', desc='thresholded',",
        "           extension='.nii.gz')",
        "```",
        "",
        "## BIDS validity",
        "",
        "`bids-validator-deno` reports no error on this folder. `.bidsignore` lists "
        "only what BIDS has no rule for:",
        "",
    ]
    for reason, patterns in names.BIDSIGNORE:
        lines.append(f"- {', '.join(f'`{p}`' for p in patterns)}: {reason}")
    lines += ["", "Warnings that remain:", ""]
    lines += [f"- `{code}`: {why}" for code, why in KNOWN_WARNINGS.items()]
    return "\n".join(lines) + "\n"


def bidsignore_text() -> str:
    lines = ["# Files BIDS has no rule for (written by csale_app; see README.md)."]
    for reason, patterns in names.BIDSIGNORE:
        lines += ["# " + line for line in textwrap.wrap(reason, 88)]
        lines.extend(patterns)
    return "\n".join(lines) + "\n"


def write_dataset_files(output_dir: Path, authors=()) -> None:
    """Write (or refresh) the dataset-level files from the studyset folders present."""
    from .bids import pybids_config_path

    output_dir = Path(output_dir)
    provenance = studyset_provenance(output_dir)
    desc = description(output_dir, provenance, authors)
    write_json(output_dir / names.DESCRIPTION, desc)
    write_text(output_dir / names.DATASET_README, readme_text(provenance, desc.get("Authors", [])))
    write_text(output_dir / ".bidsignore", bidsignore_text())
    write_atomic(
        output_dir / names.PYBIDS_CONFIG,  # (creates code/)
        lambda p: shutil.copyfile(pybids_config_path(), p),
    )
    legacy = output_dir / names.LEGACY_PYBIDS_CONFIG
    try:
        legacy.unlink(missing_ok=True)  # where earlier versions put it; invalid BIDS there
    except OSError as exc:
        LOG.warning(
            "%s: cannot remove the old pybids config (%s); the BIDS validator "
            "will report it until it is removed",
            legacy,
            exc,
        )
