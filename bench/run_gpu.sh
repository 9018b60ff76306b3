#!/usr/bin/env bash
# Time one training epoch for every provider and shape on this machine's GPU and save the
# pytest-benchmark JSON under bench/results/ (name: epoch_<UTC time>_<commit>.json).
# Extra arguments go to pytest, e.g. -k "triton and g2".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
# The kernels ship as mgdl_fast.kernels, which only an install maps (BUILD.md: the GPU image
# has the build tools, no network).
python3 -c "import mgdl_fast.kernels" 2>/dev/null ||
  python3 -m pip install --no-build-isolation --no-deps -q .
commit="${MGDL_FAST_COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}"
export MGDL_FAST_COMMIT="$commit"
mkdir -p bench/results
out="bench/results/epoch_$(date -u +%Y%m%dT%H%M%SZ)_${commit}.json"
python3 -m pytest bench/bench_epoch.py -p no:cacheprovider --benchmark-enable \
  --benchmark-min-rounds=20 --benchmark-warmup=on --benchmark-json "$out" "$@"
echo "saved $out"
