#!/usr/bin/env bash
# Idempotent set-up used by main.sh and test.sh: virtualenv, torch (CPU wheel), nas-kd, Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NAS_KD_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "nas-kd needs Python >= 3.11"'
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# torch first, pinned to the CPU wheel on these machines (a bare 'torch' pulls a multi-GB CUDA build).
"$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
stamp="$VENV/.nas_kd_installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$PY" -m pip install -q -e ".[test,onnx,openvino,tensorboard,postgres]"
  echo "$want" > "$stamp"
fi

data="${NAS_KD_DATA:-/usr/share/datasets/fashion-mnist}"
if [ ! -e "$data/train-images-idx3-ubyte.gz" ] && [ ! -e "$data/train-images-idx3-ubyte" ]; then
  if [ -z "${NAS_KD_DATA:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST not found in $data." >&2
    echo "Install Debian's dataset-fashion-mnist (as root), or put the four IDX files" >&2
    echo "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or raw)" >&2
    echo "in a directory and point NAS_KD_DATA at it." >&2
    exit 1
  fi
fi

# PostgreSQL (the OS package) for shared searches and job queues across machines; the tests start a throwaway
# server with it. Installed when missing and root can; without it those tests say so and are skipped.
if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null || echo "PostgreSQL could not be installed" >&2
  fi
fi
