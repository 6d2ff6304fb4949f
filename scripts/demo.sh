#!/usr/bin/env bash
# Install shieldware in a venv and serve the demo shop on http://127.0.0.1:8000/ (README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_python
exec .venv/bin/shieldware demo "$@"
