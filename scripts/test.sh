#!/usr/bin/env bash
# The test command (what CI runs): lint, type check, the whole suite (Triton kernels in the
# interpreter on CPU, GPU tests skipped with their reason, every benchmark once as a smoke test,
# the GPU suite's rehearsals), the GPU suite's dry run (every stage's logic at tiny sizes on
# this CPU), then the same on the GPU machine's Python 3.12 / torch 2.11 stack.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
"$VENV/bin/python" -m pytest -q
PYTHON="$VENV/bin/python" bench/gpu_suite.sh --dry-run
scripts/check_torch211.sh
