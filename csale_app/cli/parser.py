"""Command-line parser (BIDS-App conventions), derived from the settings definition.

``build_parser`` is separate from ``main``; every option comes from a field of
:class:`csale_app.settings.Settings` (its flags, help, group, value parser and default), so
the parser cannot drift from the settings. ``args_to_settings`` is the way back.
"""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

from .._version import __version__
from ..settings import OptionValueError, Settings, options

EPILOG = """\
examples:
  whole-brain ALE of every table in a folder:
    csale-app /data/in /data/out group --analyses ale
  C-SALE in the cerebellum against a reference database:
    csale-app /data/in /data/out group --analyses csale --roi cerebellum --database /data/brainmap
  MACM seeded by the significant C-SALE clusters:
    csale-app /data/in /data/out group --analyses csale macm --roi cerebellum --macm-seed clusters
  C-SALE of the Neurosynth studies of a term in the cerebellum against all of Neurosynth:
    csale-app /data/empty /data/out group --database /data/neurosynth \\
        --term "working memory" --default-sample-size 20 --analyses csale --roi cerebellum
  one studyset per job-array task, then one run that reuses them and writes the report:
    csale-app /data/in /data/out group --studyset-label "$LABEL"   # in each task
    csale-app /data/in /data/out group                            # after the array

input formats (INPUT_DIR/<label>.<ext>, one studyset each; INPUT_DIR/database/ and
INPUT_DIR/roi.nii.gz optional):
  .txt   Sleuth/GingerALE text (// Reference=MNI|Talairach, // Subjects=N)
  .tsv/.csv  columns study_id, contrast_id, x, y, z, space, sample_size (+ JSON sidecar)
  .json  NiMARE Dataset JSON or NIMADS/NeuroStore studyset JSON; a folder: NiMARE parquet
  a folder of Neurosynth v7 / NeuroQuery v1 files (data-neurosynth_version-7_coordinates.tsv.gz,
  ..._metadata.tsv.gz, ..._features.npz, ..._vocabulary.txt) as downloaded

exit codes:
  0 success; 1 failure (also --device cuda without a usable GPU); 18 empty selection;
  64 usage error; 65 malformed input (file:line named); 66 missing or unreadable input;
  69 the Dask scheduler cannot be reached or was lost (--dask-scheduler[-file]);
  73 output cannot be created, is in use, or holds results of other settings
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and "did you mean" for misspelt options."""

    def error(self, message: str):  # noqa: D401 - argparse API
        message = " ".join(message.split())
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        hint = ""
        if unknown:
            known = [s for a in self._actions for s in a.option_strings]
            for token in unknown.group(1).split():
                flag = token.split("=")[0]
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
                if flag.startswith("-") and close:
                    hint = f"; did you mean {close[0]}?"
                    break
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")


def _type(parse):
    """argparse type from a settings value parser (ArgumentTypeError gives one line)."""

    def convert(text: str):
        try:
            return parse(text)
        except OptionValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _add_option(group, f) -> None:
    meta = f.metadata
    flags = meta["flags"] or (f"--{f.name.replace('_', '-')}",)
    kw: dict = {"dest": f.name, "help": meta["help"]}
    action = meta["action"]
    default = f.default
    if action == "boolean":
        kw.update(action=argparse.BooleanOptionalAction, default=default)
    elif action in ("store_true", "count"):
        kw.update(action=action, default=default)
    else:
        kw["default"] = list(default) if isinstance(default, tuple) else default
        if action == "extend":  # repeatable: --term a --term b (and --term a b)
            kw["action"] = action
        if meta["parse"] is not None:
            kw["type"] = _type(meta["parse"])
        for key in ("choices", "nargs", "metavar"):
            if meta[key] is not None:
                kw[key] = meta[key]
    group.add_argument(*flags, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="csale-app",
        allow_abbrev=False,
        description="ALE, C-SALE and MACM coordinate-based meta-analysis (BIDS App).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # "-40,20,30" (an --roi-coords value) is a number, not an option; no option starts
    # with a digit, so any "-<digit>" token can be treated as a value.
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    p.add_argument("input_dir", type=Path, help="folder of coordinate tables (one studyset each)")
    p.add_argument("output_dir", type=Path, help="folder for the BIDS derivatives")
    p.add_argument("analysis_level", choices=["group"], help="'group': every studyset found")
    p.add_argument("--version", action="version", version=f"csale-app {__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in options():
        if not f.metadata["cli"]:
            continue
        group = f.metadata["group"]
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        _add_option(groups[group], f)
    return p


def args_to_settings(args: argparse.Namespace) -> Settings:
    values = {}
    for f in options():
        if not f.metadata["cli"]:
            continue
        v = getattr(args, f.name)
        if isinstance(v, list):
            v = tuple(dict.fromkeys(tuple(x) if isinstance(x, list) else x for x in v))
        elif isinstance(v, Path):
            v = str(v)
        values[f.name] = v
    return Settings(**values)


def parse_settings(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    """Parse ``argv`` into (namespace, settings); usage errors exit via ``parser.error``
    (status 2, mapped to 64 by ``main``), including the cross-option checks."""
    from ..validate import usage_problems

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = args_to_settings(args)
    problem = usage_problems(settings)
    if problem:
        parser.error(problem)
    return args, settings
