#!/usr/bin/env bash
# Set up a virtual environment in .venv with the CPU build of PyTorch and diffsample.
#   bash scripts/setup.sh          core + benchmark extras (scipy, scikit-learn, matplotlib)
#   bash scripts/setup.sh test     + test tools (pytest, ruff) and the peers (diffusers, k-diffusion), so the
#                                    tests against them run instead of being skipped
#   bash scripts/setup.sh peers    the same as test (kept for the commands in older notes)
# The CPU torch is installed first and pinned, so no later step pulls CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-bench}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" "torch==2.13.0"
fi
case "$extra" in
  bench) "${pip[@]}" -e ".[bench]" ;;
  test|peers) "${pip[@]}" -e ".[test]" && "${pip[@]}" --no-deps -r requirements-peers.txt ;;
  *) echo "usage: bash scripts/setup.sh [bench|test|peers]" >&2; exit 2 ;;
esac
