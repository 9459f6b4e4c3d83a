#!/usr/bin/env bash
# Run the test suite in .venv (created by scripts/setup_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
