#!/usr/bin/env bash
# The GPU machine's Python stack on this CPU: Python 3.12, torch 2.11.0 (its CUDA 13.0 build,
# which imports and runs on a CPU), triton 3.6.0 and numpy 2.5 in .venv-torch211, then the ops
# and API tests, the self-check tests and the GPU suite's dry run (its smoke, benchmark, test,
# fit and compile stages) on it: nothing may rely on an API newer than the GPU machine has. CI runs it
# after the main tests. The first run installs the environment (about 4.7 GB; 2.5 min on this
# project's CPU machine); with less than 10 GB free it says so in one line and skips. The build
# stage is left out: _C links no torch, and CI builds it in the main environment.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV_TORCH211:-.venv-torch211}

find_python312() {
  local candidate
  for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
    if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 12)" 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}

# An install this script starts marks its environment $INCOMPLETE first and removes the mark
# last: an environment still marked is this script's own, left half-built by a failed or
# interrupted install, and is built again. Nothing unmarked is ever removed.
INCOMPLETE=.mgdl_fast_incomplete
if [ -L "$VENV" ] && [ -f "$VENV/$INCOMPLETE" ]; then
  echo "check_torch211: $VENV is an incomplete install behind a link; remove it by hand" >&2
  exit 2
elif [ -f "$VENV/$INCOMPLETE" ]; then
  echo "check_torch211: $VENV is incomplete (an install did not finish); building it again"
  rm -rf "$VENV"
fi
if { [ -e "$VENV" ] || [ -L "$VENV" ]; } && [ ! -x "$VENV/bin/python" ]; then
  echo "check_torch211: $VENV exists but is no Python environment; move it or set VENV_TORCH211" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  free_gb=$(df -Pk . | awk 'NR == 2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt 10 ]; then
    echo "check_torch211: skipped: $free_gb GB free here; its environment needs about 5 GB"
    exit 0
  fi
  py=$(find_python312)
  if [ -z "$py" ]; then
    echo "check_torch211: no Python 3.12 found; using $(python3 --version) instead"
    py=python3
  fi
  start=$SECONDS
  "$py" -m venv "$VENV"
  touch "$VENV/$INCOMPLETE"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.11.0 triton==3.6.0 "numpy==2.5.*"
  MGDL_FAST_CUDA=OFF "$VENV/bin/python" -m pip install -q -e ".[test]"
  rm "$VENV/$INCOMPLETE"
  echo "check_torch211: installed $VENV in $((SECONDS - start)) s"
fi
"$VENV/bin/python" -c "import platform, torch, triton, numpy
print('check_torch211: python', platform.python_version(), 'torch', torch.__version__,
      'triton', triton.__version__, 'numpy', numpy.__version__)
assert torch.__version__.startswith('2.11.0'), torch.__version__"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/ops tests/api \
  tests/backends/test_selfcheck.py
MGDL_FAST_SUITE_STAGES=smoke,bench,tests,denoise,stream,compile PYTHON="$VENV/bin/python" \
  bench/gpu_suite.sh --dry-run
