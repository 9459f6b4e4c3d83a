#!/usr/bin/env bash
# Refresh the image's lock files from pyproject.toml (exact versions + sha256 of every file).
#
#   bash requirements/refresh.sh                 # keep current pins, follow pyproject changes
#   UPGRADE=all bash requirements/refresh.sh     # newest versions pyproject.toml allows
#   UPGRADE=numpy bash requirements/refresh.sh   # move only numpy (and what it needs)
#
# The lock is resolved for the image's interpreter (Debian bookworm: CPython 3.11, x86_64,
# manylinux) against PyPI, by uv in a throwaway venv under /tmp (never the project's .venv).
#   requirements/lock-build.txt   setuptools + wheel (build the package and the one sdist)
#   requirements/lock-cuda12.txt  the runtime: pyproject dependencies + the `cuda` extra
# The Dockerfile installs both with `pip install --require-hashes --no-deps`; after a refresh,
# rebuild the image and run `pytest tests/packaging/test_packaging.py` (it checks that the lock and
# pyproject.toml agree).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=${UV_VERSION:-0.13.9}
venv=$(mktemp -d /tmp/csale-lock-venv.XXXX)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "uv==$UV_VERSION"
common=(--no-config --index-url https://pypi.org/simple --python-version 3.11
        --python-platform x86_64-manylinux_2_28 --generate-hashes
        --custom-compile-command "bash requirements/refresh.sh")
case "${UPGRADE:-}" in
  "") ;;
  all) common+=(--upgrade) ;;
  *) common+=(--upgrade-package "$UPGRADE") ;;
esac
"$venv/bin/uv" pip compile "${common[@]}" requirements/build.in -o requirements/lock-build.txt -q
"$venv/bin/uv" pip compile "${common[@]}" pyproject.toml --extra cuda \
    -o requirements/lock-cuda12.txt -q
echo "refreshed requirements/lock-build.txt and requirements/lock-cuda12.txt"
