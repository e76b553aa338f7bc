#!/usr/bin/env bash
# Idempotent set-up: libtorch for tch 0.24 (PyTorch 2.11.0), then the rnnlab binary.
#
#   LIBTORCH=/path/to/libtorch   use this libtorch; no venv is made
#   TORCH_INDEX_URL=URL          pip index for the wheel, e.g. a CPU-only one:
#                                https://download.pytorch.org/whl/cpu
#   PYTHON=python3               interpreter for the venv
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
PYTHON=${PYTHON:-python3}

if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/lib" ] || { echo "setup: LIBTORCH=$LIBTORCH has no lib/ folder" >&2; exit 1; }
  libtorch=$LIBTORCH
  echo "setup: using your LIBTORCH=$libtorch"
else
  have=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  if [ "$have" != "$TORCH_VERSION" ]; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (about 1 minute)"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
  else
    echo "setup: .venv already has torch $have"
  fi
  libtorch=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')
fi

# .cargo/config.toml points LIBTORCH here, so plain `cargo` commands need no exports.
ln -sfn "$libtorch" .libtorch
echo "setup: .libtorch -> $libtorch"
