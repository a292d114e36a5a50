#!/usr/bin/env bash
# The main job end to end on Fashion-MNIST: set up, then train the reference teacher.
# A re-run resumes an interrupted run from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run=runs/teacher_fmnist
resume=()
if [ -e "$run/checkpoints/last.pt" ] && [ ! -e "$run/final.json" ]; then resume=(--resume); fi
if [ -e "$run/final.json" ]; then
  echo "$run is finished; its metrics:"; cat "$run/final.json"; exit 0
fi
exec "${NAS_KD_VENV:-.venv}/bin/nas-kd" train-teacher --recipe recipes/teacher_fmnist.yaml \
  --results results/teacher_fmnist.json "${resume[@]}" "$@"
