#!/usr/bin/env bash
# Fresh-machine install: a virtual environment with the CPU build of torch, pinned Triton, and
# mgdl_fast (editable) with its test extras. The CUDA extension is built when nvcc is present
# (MGDL_FAST_CUDA=ON then, so a broken build fails loudly); override with MGDL_FAST_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ -z "${MGDL_FAST_CUDA:-}" ]; then
  if command -v nvcc >/dev/null 2>&1; then MGDL_FAST_CUDA=ON; else MGDL_FAST_CUDA=AUTO; fi
fi
export MGDL_FAST_CUDA
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: a torch pulled in by a range resolves to a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q torch==2.13.0 triton==3.6.0 numpy
"$VENV/bin/python" -m pip install -q -e ".[test]"
echo "installed mgdl_fast into $VENV (MGDL_FAST_CUDA=$MGDL_FAST_CUDA)"
