"""Typed records that cross layers as JSON: a studyset's summary and the record of a run.

:class:`StudysetSummary` is what :func:`csale_app.stages.run_analyses` returns beside the
outputs: the counts, what ran (each analysis's own summary), what was skipped and why, the
reference database and ROI. The report shows it; the run's record keeps it.
:class:`RunRecord` is the ``.csale_provenance.json`` of a ``studyset-<S>/`` folder: the reuse
digest, the result-changing settings, the summary and the version. The pipeline writes it
when it publishes the folder and reads it back to reuse the folder.

A leaf: nothing from the package is imported, so every layer may use these records.
``to_json()`` gives plain JSON values (dicts, lists, str, int, float, bool, None) in the
order they are written; ``from_json()`` takes what ``json.load`` gives back and refuses
(``ValueError``) a shape that no version writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

LOG = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """``value`` as JSON gives it back: tuples as lists, numpy scalars as Python numbers,
    paths as strings, mapping keys as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()  # a numpy scalar
    return value


def _mapping(data: Any, what: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _optional_mapping(data: dict, key: str, what: str) -> dict | None:
    value = data.get(key)
    return None if value is None else plain(_mapping(value, f"{what}.{key}"))


def _count(data: dict, key: str, what: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}.{key}: expected a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class StudysetSummary:
    """What ran for one studyset.

    ``analyses``: one summary per analysis that ran (``"ale"``, ``"csale"``, ``"mkdachi2"``,
    ``"macm"``), as its stage made it; ``skipped``: analysis -> why it did not run;
    ``database``: ``Database.describe()`` and ``same_as_studyset``; ``roi``: the ROI's label,
    voxel counts and dilation (None without an ROI); ``term``: the term selection of a
    ``--term`` studyset; ``runtime_s``: the studyset's wall time, once measured.
    """

    label: str
    n_experiments: int
    n_foci: int
    source: str | None = None
    analyses: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    database: dict | None = None
    roi: dict | None = None
    term: dict | None = None
    runtime_s: float | None = None

    def __post_init__(self):
        # plain JSON values from the start, so a summary read back from disk equals the
        # one the run made (and the report shows the same either way)
        for name in ("analyses", "skipped", "database", "roi", "term"):
            object.__setattr__(self, name, plain(getattr(self, name)))
        object.__setattr__(self, "n_experiments", int(self.n_experiments))
        object.__setattr__(self, "n_foci", int(self.n_foci))

    def with_runtime(self, seconds: float) -> StudysetSummary:
        return replace(self, runtime_s=round(float(seconds), 2))

    def ran(self) -> list[str]:
        """The analyses that ran (a MACM whose every seed was skipped is not one)."""
        return [
            k for k, v in self.analyses.items() if not (isinstance(v, dict) and v.get("skipped"))
        ]

    def skip_reasons(self) -> list[str]:
        """'analysis: reason' for every skipped analysis, each once."""
        out = [f"{k}: {v}" for k, v in self.skipped.items()]
        out += [
            f"{k}: {v['skipped']}"
            for k, v in self.analyses.items()
            if isinstance(v, dict) and v.get("skipped")
        ]
        return list(dict.fromkeys(out))

    def to_json(self) -> dict:
        out = {
            "label": self.label,
            "source": self.source,
            "n_experiments": self.n_experiments,
            "n_foci": self.n_foci,
            "analyses": self.analyses,
            "skipped": self.skipped,
            "database": self.database,
            "roi": self.roi,
        }
        if self.term is not None:
            out["term"] = self.term
        if self.runtime_s is not None:
            out["runtime_s"] = self.runtime_s
        return out

    @classmethod
    def from_json(cls, data: Any) -> StudysetSummary:
        what = "studyset summary"
        data = _mapping(data, what)
        label = data.get("label")
        if not isinstance(label, str) or not label:
            raise ValueError(f"{what}.label: expected the studyset label, got {label!r}")
        source = data.get("source")
        if source is not None and not isinstance(source, str):
            raise ValueError(f"{what}.source: expected a string, got {source!r}")
        runtime = data.get("runtime_s")
        if runtime is not None and (
            isinstance(runtime, bool) or not isinstance(runtime, (int, float))
        ):
            raise ValueError(f"{what}.runtime_s: expected seconds, got {runtime!r}")
        return cls(
            label=label,
            n_experiments=_count(data, "n_experiments", what),
            n_foci=_count(data, "n_foci", what),
            source=source,
            analyses=_mapping(data.get("analyses", {}), f"{what}.analyses"),
            skipped=_mapping(data.get("skipped", {}), f"{what}.skipped"),
            database=_optional_mapping(data, "database", what),
            roi=_optional_mapping(data, "roi", what),
            term=_optional_mapping(data, "term", what),
            runtime_s=None if runtime is None else float(runtime),
        )


@dataclass(frozen=True)
class RunRecord:
    """A published studyset folder's record (``.csale_provenance.json``): the digest the
    reuse rule compares, the result-changing settings, the summary and the version."""

    digest: str
    settings: dict
    summary: StudysetSummary
    version: str

    def __post_init__(self):
        object.__setattr__(self, "settings", plain(self.settings))

    def to_json(self) -> dict:
        return {
            "digest": self.digest,
            "settings": self.settings,
            "summary": self.summary.to_json(),
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        what = "run record"
        data = _mapping(data, what)
        for key in ("digest", "version"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{what}.{key}: expected a string, got {data.get(key)!r}")
        return cls(
            digest=data["digest"],
            settings=_mapping(data.get("settings"), f"{what}.settings"),
            summary=StudysetSummary.from_json(data.get("summary")),
            version=data["version"],
        )
