#!/usr/bin/env bash
# The test command: lint, then the whole suite (Triton kernels run in the interpreter on CPU;
# GPU tests skip with their reason; benchmarks run once each as a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/python" -m pytest -q
