#!/usr/bin/env bash
# Set up (venv, packages, data), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${NAS_KD_VENV:-.venv}/bin/python" -m pytest -q --durations=10 "$@"
