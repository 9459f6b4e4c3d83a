"""Term studysets: the studies of a Neurosynth/NeuroQuery file set whose weight for a term
is at least a threshold (NiMARE's ``Dataset.get_studies_by_label(label, label_threshold)``,
Neurosynth's ``get_studies(features=..., frequency_threshold=...)``).

The features matrix (studies x terms, rows in the metadata's order) is read once per run as
a compressed sparse column matrix, so one term's selection is one column slice.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, UsageError
from .neurosynth import FeatureSet, FileSet, read_metadata
from .read_common import check_regular_file, decode_text, read_bytes

LOG = logging.getLogger(__name__)
LABEL_PREFIX = "term"
#: What selects a study, in words (sidecars, report, Methods).
RULE = "weight >= threshold (NiMARE Dataset.get_studies_by_label)"


def term_label(term: str) -> str:
    """``term`` + the term's ASCII letters and digits: 'working memory' -> termworkingmemory."""
    return LABEL_PREFIX + re.sub(r"[^A-Za-z0-9]", "", term)


def choose_feature_set(fs: FileSet, wanted: str | None) -> FeatureSet:
    """The feature set named by ``--term-vocab`` (its vocab or vocab_source_type), or the
    only one; none or an ambiguous choice is a usage error listing the choices."""
    names = [f.name for f in fs.feature_sets]
    if not fs.feature_sets:
        raise UsageError(
            f"{fs.folder}: --term needs term features "
            f"(data-{fs.database}_version-{fs.version}_vocab-<vocab>_source-"
            "<source>_type-<type>_features.npz and its vocabulary); none found"
        )
    if wanted is None:
        if len(fs.feature_sets) == 1:
            return fs.feature_sets[0]
        raise UsageError(
            f"{fs.folder}: holds several feature sets ({', '.join(names)}); "
            "choose one with --term-vocab"
        )
    found = [f for f in fs.feature_sets if wanted in (f.name, f.vocab)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(
            f"--term-vocab {wanted}: several feature sets have this vocabulary "
            f"({', '.join(f.name for f in found)}); give vocab_source_type"
        )
    raise UsageError(
        f"--term-vocab {wanted}: no such feature set in {fs.folder} (found: {', '.join(names)})"
    )


@dataclass(frozen=True)
class TermFeatures:
    """A feature set read and checked: ``matrix`` is studies x terms (CSC)."""

    fileset: FileSet
    feature_set: FeatureSet
    study_ids: np.ndarray  # object, metadata order
    vocabulary: tuple[str, ...]
    matrix: object  # scipy.sparse.csc_matrix
    digest: str  # of the features and vocabulary files' bytes

    def column(self, term: str) -> int:
        """The vocabulary index of ``term``; an unknown term is a usage error (exit 64)
        with the closest terms."""
        try:
            return self.vocabulary.index(term)
        except ValueError:
            close = difflib.get_close_matches(term, self.vocabulary, n=5, cutoff=0.6)
            hint = (
                f"; close matches: {', '.join(repr(c) for c in close)}"
                if close
                else "; no close match"
            )
            raise UsageError(
                f"--term {term!r} is not in the vocabulary of "
                f"{self.feature_set.name} ({len(self.vocabulary)} terms, "
                f"{self.feature_set.vocabulary.name}){hint}"
            ) from None

    def select(self, term: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(study ids, weights) of the studies with weight >= ``threshold`` (> 0), in
        metadata order."""
        j = self.column(term)
        lo, hi = self.matrix.indptr[j], self.matrix.indptr[j + 1]
        rows, weights = self.matrix.indices[lo:hi], self.matrix.data[lo:hi]
        keep = weights >= threshold
        order = np.argsort(rows[keep], kind="stable")
        return self.study_ids[rows[keep][order]], weights[keep][order]


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def read_vocabulary(path: Path) -> tuple[str, ...]:
    """One term per line (as NiMARE's ``np.loadtxt(dtype=str, delimiter="\\t")``)."""
    text = decode_text(path, read_bytes(path))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    terms = [t.rstrip("\r") for t in lines]
    for k, t in enumerate(terms):
        if not t.strip():
            raise InputError(path, k + 1, "empty term")
    return tuple(terms)


def load_features(fs: FileSet, wanted: str | None) -> TermFeatures:
    """Read and check the chosen feature set: rows = metadata studies, columns = terms."""
    from scipy import sparse

    chosen = choose_feature_set(fs, wanted)
    check_regular_file(chosen.features)
    try:
        matrix = sparse.load_npz(chosen.features)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise InputError(
            chosen.features,
            None,
            f"cannot read the sparse features matrix "
            f"({' '.join(str(err).split())[:160]}); download it again",
        ) from None
    matrix = sparse.csc_matrix(matrix)
    matrix.sort_indices()
    vocabulary = read_vocabulary(chosen.vocabulary)
    meta = read_metadata(fs)
    n_rows, n_cols = matrix.shape
    if n_rows != len(meta):
        raise InputError(
            chosen.features,
            None,
            f"has {n_rows} rows but {fs.metadata.name} "
            f"lists {len(meta)} studies (rows must be the metadata's studies, "
            "in order)",
        )
    if n_cols != len(vocabulary):
        raise InputError(
            chosen.vocabulary,
            None,
            f"lists {len(vocabulary)} terms but {chosen.features.name} has {n_cols} columns",
        )
    if len(set(vocabulary)) != len(vocabulary):
        seen: dict[str, int] = {}
        for k, t in enumerate(vocabulary):
            if t in seen:
                raise InputError(chosen.vocabulary, k + 1, f"term {t!r} repeats line {seen[t] + 1}")
            seen[t] = k
    if matrix.nnz and not np.isfinite(matrix.data).all():
        raise InputError(chosen.features, None, "holds NaN or infinite weights")
    return TermFeatures(
        fs,
        chosen,
        meta["id"].to_numpy(dtype=object),
        vocabulary,
        matrix,
        _digest(chosen.features, chosen.vocabulary),
    )


@dataclass(frozen=True)
class TermStudyset:
    """A studyset defined by a term: stands where a studyset file's path stands (its
    ``str`` is the source named in sidecars and the report; ``digest`` replaces the file
    digest in the reuse rule)."""

    term: str
    label: str
    threshold: float
    feature_set: str
    features_file: str
    study_ids: tuple[str, ...]
    weights: tuple[float, ...]
    digest: str

    def __str__(self) -> str:
        return (
            f"term '{self.term}' ({self.feature_set} weight >= {self.threshold:g}) in "
            f"{self.features_file}"
        )

    @property
    def name(self) -> str:  # as Path.name, for messages
        return self.label

    def experiment_mask(self, study_ids) -> np.ndarray:
        """Which of the database experiments (given by their study ids) are selected."""
        return np.isin(
            np.asarray(study_ids, dtype=object), np.asarray(self.study_ids, dtype=object)
        )

    def table(self, db_table: pd.DataFrame) -> pd.DataFrame:
        """Selected studies, their weights and what became of them in the database."""
        status = db_table.drop_duplicates("study_id").set_index("study_id")
        frame = pd.DataFrame(
            {"study_id": list(self.study_ids), "weight": np.asarray(self.weights, dtype=np.float64)}
        )
        n = status["n_foci"].reindex(frame["study_id"]) if len(status) else None
        frame["n_foci"] = (
            n.fillna(0).astype(np.int64).to_numpy()
            if n is not None
            else np.zeros(len(frame), np.int64)
        )
        frame["status"] = (
            status["status"]
            .reindex(frame["study_id"])
            .fillna("no coordinates in the database")
            .to_numpy()
            if len(status)
            else "no coordinates in the database"
        )
        return frame

    def summary(self) -> dict:
        """What the report shows about the selection."""
        return {
            "term": self.term,
            "threshold": self.threshold,
            "feature_set": self.feature_set,
            "n_studies": len(self.study_ids),
        }

    def sidecar(self, n_experiments: int) -> dict:
        return {
            "Description": "Studies selected by a term: " + RULE,
            "Term": self.term,
            "FeatureSet": self.feature_set,
            "FeaturesFile": self.features_file,
            "Threshold": self.threshold,
            "NumberOfStudiesSelected": len(self.study_ids),
            "NumberOfExperiments": n_experiments,
            "Status": "'kept': an experiment of the studyset (before any ROI "
            "restriction); else why the study is not one",
        }


def term_studyset(
    features: TermFeatures, term: str, threshold: float, database_digest: str
) -> TermStudyset:
    ids, weights = features.select(term, threshold)
    h = hashlib.sha256()
    for part in (
        database_digest,
        features.digest,
        features.feature_set.name,
        term,
        repr(float(threshold)),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return TermStudyset(
        term,
        term_label(term),
        float(threshold),
        features.feature_set.name,
        str(features.feature_set.features),
        tuple(str(i) for i in ids),
        tuple(float(w) for w in weights),
        h.hexdigest(),
    )
