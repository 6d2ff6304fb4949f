#!/usr/bin/env bash
# Install everything the test suite needs (venv, Python packages, Debian packages, services)
# and run the whole suite. This is the README's second command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_python
setup_system_packages
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba-cache}"
.venv/bin/ruff check shieldware tests bench
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
