"""Report tables: formatting, and the compact views of the output TSVs that fit the page.

The TSV files keep every column; the report shows the columns a reader needs, merged where
that saves width (peak and centre as "x, y, z"), with long lists cut to the top few and the
rest in a ``<details>`` (:class:`Cell`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MAX_ROWS = 500
TOP_CONTRIBUTORS = 3


@dataclass
class Cell:
    """A table cell with a short text and, optionally, more lines behind a ``<details>``."""

    text: str
    more: list[str] = field(default_factory=list)
    more_label: str = ""


@dataclass
class Link:
    """A table cell that links to another page of the report (a relative address)."""

    text: str
    href: str


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]  # str or Cell
    note: str = ""
    kv: bool = False  # key/value table: no header row
    css: str = ""  # extra class (e.g. "narrow" for numeric tables)

    @property
    def breaks(self) -> list[bool]:
        """Per column: True if a cell holds a long word (an ID, a path), which may then be
        broken anywhere; other columns wrap at spaces only, so numbers stay whole."""
        out = [False] * len(self.columns)
        for r in self.rows:
            for i, v in enumerate(r[: len(out)]):
                text = v.text if isinstance(v, (Cell, Link)) else str(v)
                if not out[i] and max(map(len, text.split()), default=0) > 16:
                    out[i] = True
        return out


def anchor(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_-]", "_", str(p)) for p in parts)


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "n/a"
        if float(v).is_integer() and abs(v) < 1e12:
            return str(int(v))
        return f"{float(v):.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return "; ".join(f"{k} {fmt(x)}" for k, x in v.items()) if v else "none"
    return str(v)


def fmt_seconds(s) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return fmt(s)
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s" if m else f"{s:.1f} s"


def xyz(x, y, z) -> str:
    return ", ".join(fmt(round(float(v), 1)) for v in (x, y, z))


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a", "", "NaN"])


def df_table(
    df: pd.DataFrame, title: str, max_rows: int = MAX_ROWS, note: str = "", css: str = ""
) -> Table:
    rows = [
        [v if isinstance(v, Cell) else fmt(v) for v in r]
        for r in df.head(max_rows).itertuples(index=False)
    ]
    if len(df) > max_rows:
        note = (
            note + " " if note else ""
        ) + f"First {max_rows} of {len(df)} rows shown; the full table is in the TSV file."
    return Table(title, [str(c) for c in df.columns], rows, note, css=css)


def kv_table(title: str, items) -> Table:
    return Table(title, ["", ""], [[str(k), fmt(v)] for k, v in items], kv=True)


def unique(items) -> list:
    """Items in order, each once (messages reach the report by more than one path)."""
    seen, out = set(), []
    for it in items:
        if it not in seen:
            seen.add(it)
            out.append(it)
    return out


# ---- cluster, peak and contribution tables --------------------------------------------------
def _label(row, prefix: str) -> str:
    """The atlas labels of a peak that are not "unlabelled", joined."""
    labs = [
        str(row[c])
        for c in row.index
        if c.startswith(prefix) and str(row[c]) not in ("unlabelled", "nan", "n/a", "")
    ]
    return "; ".join(unique(labs)) or "unlabelled"


def contributors(contrib: pd.DataFrame | None) -> dict:
    """Per cluster id: a :class:`Cell` with the top experiments and the rest behind details."""
    if contrib is None or not {"cluster_id", "experiment_id", "jackknife"} <= set(contrib):
        return {}
    c = contrib.copy()
    if "n_foci_in_cluster" not in c:
        c["n_foci_in_cluster"] = 0
    c = c[(c["jackknife"] > 0) | (c["n_foci_in_cluster"] > 0)]
    out = {}
    for cid, grp in c.groupby("cluster_id", sort=True):
        grp = grp.sort_values(["jackknife", "n_foci_in_cluster"], ascending=False)
        items = [
            f"{r.experiment_id} ({100 * float(r.jackknife):.1f} %, "
            f"{int(r.n_foci_in_cluster)} "
            f"{'focus' if int(r.n_foci_in_cluster) == 1 else 'foci'})"
            for r in grp.itertuples()
        ]
        more = items[TOP_CONTRIBUTORS:]
        out[cid] = Cell(
            "; ".join(items[:TOP_CONTRIBUTORS]), more, f"{len(more)} more" if more else ""
        )
    return out


def clusters_report_table(
    clusters: pd.DataFrame,
    contrib: pd.DataFrame | None,
    title: str,
    stat_name: str = "peak_ale",
    fwe: bool = True,
) -> Table:
    """Clusters with one column each: id, size, peak, peak value, centre, FWE p (unless not
    ``fwe``: the cluster-extent map's clusters have none), labels, composition and
    contributors (jackknife share, foci in the cluster)."""
    contrib_cells = contributors(contrib)
    cols = [
        "Cluster",
        "Voxels (mm³)",
        "Peak x, y, z (mm)",
        "Peak ALE",
        "Centre x, y, z",
        "p (cluster FWE)",
        "Peak label",
        "Composition",
    ]
    has_contrib = bool(contrib_cells) or "top_contributors" in clusters
    if has_contrib:
        cols.append("Top contributing experiments (jackknife share, foci in cluster)")
    rows = []
    for _, r in clusters.iterrows():
        get = r.get
        size = f"{fmt(get('size_voxels'))} ({fmt(get('size_mm3'))})"
        p = fmt(get("p_fwe_size"))
        if "p_fwe_mass" in r:
            p += f" (size); {fmt(get('p_fwe_mass'))} (mass)"
        row = [
            fmt(get("cluster_id")),
            size,
            xyz(get("peak_x"), get("peak_y"), get("peak_z")) if "peak_x" in r else "n/a",
            fmt(get(stat_name)),
            xyz(get("centre_x"), get("centre_y"), get("centre_z")) if "centre_x" in r else "n/a",
            p,
            _label(r, "peak_label_"),
            fmt(get("composition", "n/a")),
        ]
        if has_contrib:
            cell = contrib_cells.get(get("cluster_id"))
            if cell is None:  # no contributions table: the TSV's own summary column
                cell = Cell(fmt(get("top_contributors", "")))
            row.append(cell)
        rows.append(row)
    if not fwe:
        i = cols.index("p (cluster FWE)")
        cols = cols[:i] + cols[i + 1 :]
        rows = [r[:i] + r[i + 1 :] for r in rows]
    note = "" if len(clusters) else ("No significant cluster." if fwe else "No cluster.")
    return Table(title, cols, rows, note)


def peaks_report_table(peaks: pd.DataFrame, title: str) -> Table:
    value = next(
        (
            c
            for c in peaks.columns
            if c not in ("cluster_id", "peak_id", "x", "y", "z") and not c.startswith("label_")
        ),
        None,
    )
    rows = [
        [
            fmt(r.get("peak_id")),
            xyz(r["x"], r["y"], r["z"]),
            fmt(r.get(value)) if value else "n/a",
            _label(r, "label_"),
        ]
        for _, r in peaks.head(MAX_ROWS).iterrows()
    ]
    return Table(
        title, ["Peak", "x, y, z (mm)", (value or "value").upper(), "Labels"], rows, css="narrow"
    )


def lobules_table(lobules: pd.DataFrame, title: str) -> Table:
    """The SUIT lobule table of a map (stats/lobules.py): the rows add up to its voxels."""
    rows = [
        [
            str(r["lobule"]),
            fmt(r["n_voxels"]),
            "n/a" if pd.isna(r["percent_of_lobule"]) else f"{r['percent_of_lobule']:.1f}%",
            f"{r['percent_of_result']:.1f}%",
        ]
        for _, r in lobules.iterrows()
    ]
    total = int(lobules["n_voxels"].sum()) if len(lobules) else 0
    return Table(
        title,
        ["SUIT lobule", "Significant voxels", "Share of the lobule", "Share of the result"],
        rows,
        css="narrow",
        note=f"{total} significant voxels in all; SUIT lobular atlas (Diedrichsen "
        "2009) in MNI152NLin6Asym, nearest-neighbour on the 2 mm grid.",
    )


def contributions_table(contrib: pd.DataFrame, title: str) -> Table:
    c = contrib
    if {"jackknife", "n_foci_in_cluster"} <= set(c.columns):
        c = c[(c["jackknife"] > 0) | (c["n_foci_in_cluster"] > 0)]
    c = c.assign(jackknife=(100 * c["jackknife"]).round(2)) if "jackknife" in c else c
    c = c.rename(
        columns={
            "cluster_id": "Cluster",
            "experiment_id": "Experiment",
            "jackknife": "Jackknife share (%)",
            "n_foci_in_cluster": "Foci in cluster",
        }
    )
    return df_table(
        c,
        title,
        css="narrow",
        note="Jackknife share = share of the cluster's ALE lost when the experiment "
        "is left out (mean over its voxels).",
    )


# ---- experiments ----------------------------------------------------------------------------
def _analysed(df: pd.DataFrame) -> pd.Series:
    kept = (
        df["status"].astype(str).str.startswith("kept")
        if "status" in df
        else pd.Series(True, index=df.index)
    )
    if "n_foci_in_analysis_mask" in df:  # tables written before the status said so
        kept &= pd.to_numeric(df["n_foci_in_analysis_mask"], errors="coerce").fillna(0) > 0
    return kept


def experiments_tables(df: pd.DataFrame) -> tuple[list[Table], dict]:
    """The experiments table split into those analysed and those not (with the reason).

    Returns the tables and counts {"analysed", "not_analysed", "total", "contrasts"}: the
    row counts of the tables, which the summary quotes.
    """
    kept = _analysed(df)
    show = pd.DataFrame({"Experiment": df.get("experiment_id", df.index)})
    if "contrast_ids" in df:
        # missing ids stay missing under pandas' string dtype: no contrast, not "nan"
        contrasts = df["contrast_ids"].map(lambda v: [] if pd.isna(v) else str(v).split("|"))
        show["Contrasts"] = [
            Cell(
                f"{len(c)}: " + "; ".join(c[:3]), c[3:], f"{len(c) - 3} more" if len(c) > 3 else ""
            )
            if len(c) > 1
            else Cell(c[0] if c else "")
            for c in contrasts
        ]
        n_contrasts = int(contrasts.map(len).sum())
    else:
        n_contrasts = len(df)
    for col, name in (
        ("sample_size", "N"),
        ("n_foci", "Foci"),
        ("n_foci_in_analysis_mask", "Foci in analysis mask"),
        ("n_foci_dropped", "Foci outside template"),
        ("space", "Space"),
        ("source_file", "Source"),
    ):
        if col in df:
            show[name] = df[col].to_numpy()
    if "status" in df:
        status = (
            df["status"]
            .astype(str)
            .where(
                kept,
                df["status"]
                .astype(str)
                .str.replace("^kept$", "not analysed: no focus in the analysis mask", regex=True),
            )
        )
        show["Status"] = status.str.replace("^kept$", "analysed", regex=True)
    counts = {
        "analysed": int(kept.sum()),
        "not_analysed": int((~kept).sum()),
        "total": len(df),
        "contrasts": n_contrasts,
    }
    tables = [
        df_table(
            show[kept.to_numpy()].drop(columns=["Status"], errors="ignore"), "Experiments analysed"
        )
    ]
    if counts["not_analysed"]:
        tables.append(df_table(show[~kept.to_numpy()], "Experiments not analysed"))
    return tables, counts
