#!/usr/bin/env bash
# The training-step benchmark against PyTorch CPU (docs/training.md): installs
# PyTorch from PyPI into .cache/venv-torch (~5 GB: PyPI's Linux wheel brings
# its CUDA libraries even for CPU use; not part of the test suite), builds the
# host binary and runs `vipnas bench train` with any extra arguments.
#
#   scripts/bench-train.sh [--batch 16] [--input 256x192] [--threads 1,2] [--steps 5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --run
venv=.cache/venv-torch
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "bench-train: installing PyTorch into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check torch==2.15.0 numpy
fi
cargo build --release --features host
VIPNAS_TORCH_PYTHON="$PWD/$venv/bin/python" target/release/vipnas bench train "$@"
