#!/usr/bin/env bash
# The main job end to end on Fashion-MNIST: set up, then the whole pipeline
# (teacher -> supernet -> search -> export -> plots) with recipes/quickstart.yaml.
# A re-run skips finished stages and resumes an interrupted supernet from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${NAS_KD_VENV:-.venv}/bin/nas-kd" run --recipe recipes/quickstart.yaml "$@"
