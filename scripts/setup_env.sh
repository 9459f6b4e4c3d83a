#!/usr/bin/env bash
# Create .venv (once) and install csale_app with its test extra into it. Sourced by the
# demo and test scripts; safe to run again (pip skips what is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# SUITPy (the report's SUIT flatmaps) without its declared dependencies (ANTsPy, ...), which
# the flatmap does not use; what it does use is in pyproject.toml (see README, Installation)
.venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/lock-nodeps.txt
