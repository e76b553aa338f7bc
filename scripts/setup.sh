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

# The speech engines of the synthetic sets (`make data`) and the data tests: espeak-ng,
# flite, festival with three voices. `rnnlab data synth` uses every one that is present.
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v flite >/dev/null 2>&1 || missing+=(flite)
command -v festival >/dev/null 2>&1 || missing+=(festival)
for v in english/kal_diphone:festvox-kallpc16k english/ked_diphone:festvox-kdlpc16k \
  us/cmu_us_slt_arctic_hts:festvox-us-slt-hts; do
  [ -d "/usr/share/festival/voices/${v%%:*}" ] || missing+=("${v##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing speech engines or voices: sudo apt-get install ${missing[*]}" \
      "(Debian/Ubuntu; brew install espeak-ng flite festival on macOS); make data and the" \
      "data tests use every engine present and need espeak-ng" >&2
  fi
fi

# `./scripts/setup.sh --slurm`: Slurm and munge for `rnnlab sweep run --slurm`
# and `make test-slurm` (docs/sweeps.md).
if [ "${1:-}" = "--slurm" ]; then
  if command -v sbatch >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 \
      && command -v munged >/dev/null 2>&1; then
    echo "setup: Slurm and munge are installed"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing slurm-wlm and munge (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    echo "setup: Slurm is missing: sudo apt-get install slurm-wlm munge (Debian/Ubuntu)" >&2
    exit 1
  fi
fi
