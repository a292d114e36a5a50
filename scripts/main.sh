#!/usr/bin/env bash
# The main job end to end on Fashion-MNIST: set up, then the whole pipeline with recipes/quickstart.yaml
# (committed teacher and supernet -> search under 10 % of the teacher's FLOPs -> export -> distillation ->
# teacher-vs-student summary). Killed at any moment, the same command continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${NAS_KD_VENV:-.venv}/bin/nas-kd" run --recipe recipes/quickstart.yaml "$@"
