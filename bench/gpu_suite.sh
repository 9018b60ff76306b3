#!/usr/bin/env bash
# The GPU session in one command, for a lent H100/H200 (bare machine: Python 3.12, torch with
# CUDA 13, Triton, nvcc, CMake; no network). Stages in order of value, each under its own
# timeout; a failed stage is recorded and the next one runs:
#   1 build     rebuild mgdl_fast._C for this machine (editable install, no dependencies)
#   2 smoke     every kernel at the headline shapes against the torch backend (gpu_smoke.py)
#   3 bench     one epoch per provider (eager, compile, torch, triton, cuda, *-graph) at the
#               headline shapes (bench_epoch.py, pytest-benchmark JSON)
#   4 tests     pytest -m gpu
#   5 denoise   the papers' denoising protocol (PROTOCOL 3), grades timed one by one
#   6 stream    two streamed grades, the second reading grade 1's features from pinned host
#               memory in double-buffered chunks (--stream on --feature-store host)
# Everything (logs, JSON, device, driver, commit, command) goes to
# bench/results/<UTC time>_<commit>/, packed as results.tar.gz beside a summary.txt, and both
# are copied to $OUT when it is set (the device tool returns at most 8 files).
#
#   MGDL_FAST_COMMIT=$(git rev-parse --short HEAD) bench/gpu_suite.sh   # on the GPU machine
#   bench/gpu_suite.sh --dry-run     # every stage's logic on this CPU at tiny sizes (CI)
#
# The device tool copies the working tree without .git, hence MGDL_FAST_COMMIT. The exit status
# is non-zero when any stage failed (its log says why).
#
# The denoise stage reads $MGDL_FAST_IMAGE (default bench/data/butterfly.gif, a gitignored copy
# of ../shared/images/butterfly.gif carried to the device; skimage's camera if it is absent).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONUNBUFFERED=1
commit=$(git describe --always --dirty 2>/dev/null || echo "${MGDL_FAST_COMMIT:-unknown}")
export MGDL_FAST_COMMIT="$commit"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$DRY" = 1 ]; then
  dir=${SUITE_DIR:-$(mktemp -d)/gpu_suite_dry}
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
else
  dir=bench/results/${stamp}_${commit}
fi
mkdir -p "$dir"
image=${MGDL_FAST_IMAGE:-bench/data/butterfly.gif}
[ -f "$image" ] || image=""

{
  echo "command: $0 $*"
  echo "commit: $commit"
  echo "utc: $stamp"
  echo "dry_run: $DRY"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
    echo "gpu: none (nvidia-smi unavailable)"
  "$PY" -c "import torch, platform; print('python', platform.python_version(), 'torch',
torch.__version__, 'cuda', torch.version.cuda, 'device',
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
} >"$dir/environment.txt" 2>&1

summary=()
failed=0
stage() {  # stage NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$dir/$name.log" 2>&1
  local rc=$?
  local status=ok
  [ "$rc" = 0 ] || status="failed (exit $rc)"
  [ "$rc" = 124 ] && status="timed out after ${limit} s"
  [ "$rc" = 0 ] || failed=1
  summary+=("$(printf '%-8s %-28s %4d s' "$name" "$status" $((SECONDS - start)))")
  echo "${summary[-1]}"
}

if [ "$DRY" = 1 ]; then
  stage build 60 "$PY" -c "import mgdl_fast._C as c; print('_C widths', c.WIDTHS)"
  stage smoke 300 "$PY" bench/gpu_smoke.py --json "$dir/smoke.json" --tiny
  stage bench 600 "$PY" -m pytest -q -p no:cacheprovider bench/bench_epoch.py --benchmark-disable
  stage tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu --collect-only tests
  stage denoise 120 "$PY" -m mgdl_fast fit ${image:+"$image"} --task denoise --crop 24 24 \
    --grades 2 --epochs 3 --record-every 1 --device cpu --quiet --out "$dir/denoise"
  stage stream 120 "$PY" -m mgdl_fast fit ${image:+"$image"} --crop 48 48 --grades 2 \
    --epochs 3 --stream on --feature-store host --device cpu --quiet --out "$dir/stream"
else
  # Limits sum to 395 s, so the suite ends inside 7 minutes even when every stage hangs.
  stage build 80 "$PY" -m pip install -q --no-build-isolation --no-deps -e .
  stage smoke 60 "$PY" bench/gpu_smoke.py --json "$dir/smoke.json"
  stage bench 90 env MGDL_FAST_BENCH_SHAPES=headline "$PY" -m pytest -q -p no:cacheprovider \
    bench/bench_epoch.py --benchmark-enable --benchmark-min-rounds=10 --benchmark-max-time=0.5 \
    --benchmark-json "$dir/epoch.json"
  stage tests 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests
  stage denoise 60 "$PY" -m mgdl_fast fit ${image:+"$image"} --task denoise --preset paper \
    --grades "${MGDL_FAST_DENOISE_GRADES:-1}" --device cuda --quiet --out "$dir/denoise"
  stage stream 45 "$PY" -m mgdl_fast fit ${image:+"$image"} --grades 2 --epochs 300 \
    --stream on --feature-store host --device cuda --quiet --out "$dir/stream"
fi

printf '%s\n' "${summary[@]}" >"$dir/summary.txt"
tail -n 5 "$dir/denoise.log" >>"$dir/summary.txt" 2>/dev/null
tar -czf "$dir.tar.gz" -C "$(dirname "$dir")" "$(basename "$dir")"
mv "$dir.tar.gz" "$dir/results.tar.gz"
if [ -n "${OUT:-}" ]; then
  cp "$dir/summary.txt" "$dir/results.tar.gz" "$OUT"/
fi
cat "$dir/summary.txt"
echo "results in $dir"
exit "$failed"
