#!/usr/bin/env bash
# The GPU session in one command, for a lent H100/H200 (a bare copy of the working tree: Python
# 3.12, torch with CUDA 13, Triton, nvcc, CMake; no network, nothing installed). Stages in order
# of value, each under its own limit (printed first; with the steps around them and each
# stage's kill margin they sum to at most 330 s, so that with a machine start a second run still
# fits in 15 minutes); a failed stage is recorded and the next one runs. First, the wheels of
# dependencies the GPU image lacks are installed from bench/wheels (bench/ensure_deps.py). Every case is a JSON line appended the moment it exists (bench/records.py), so a
# stage that times out or crashes keeps what it finished:
#   build    _C for sm_90a on every core, while bench/prewarm_triton.py compiles the headline
#            Triton kernels into Triton's cache in other processes     -> build.jsonl, build.log
#   smoke    every backend at the headline shapes against the fp32 torch backend, NaN probes
#            (bench/gpu_smoke.py)                                         -> smoke.jsonl
#   bench    one epoch per provider at the headline shapes, kernels first (bench_epoch.py, no
#            torch.compile)                                     -> bench.jsonl, epoch.json
#   tests    pytest -m gpu, compile-heavy cases deselected, 20 s per test -> tests.jsonl, tests.xml
#   denoise  one grade of the papers' denoising protocol (auto backend: the self-check verdicts
#            land in cache/)                                       -> denoise/progress.jsonl
#   stream   two streamed grades, grade 2 reading grade 1's features from pinned host memory
#                                                                   -> stream/progress.jsonl
#   compile  the torch.compile providers (fp32 and bf16), last: their first call compiles for
#            tens of seconds                                           -> compile.jsonl
# Then bench/epoch_summary.py states every timed provider against the best torch provider of
# the same run (epoch_summary.txt). Everything goes to bench/results/<UTC time>_<commit>/ with
# summary.txt (status, seconds and records per stage) and results.tar.gz, both also copied to
# $OUT when it is set.
#
#   MGDL_FAST_COMMIT=<short hash> bench/gpu_suite.sh   # on the GPU machine (a bare copy has
#                                                      # no .git: give the hash from here)
#   bench/gpu_suite.sh --dry-run        # every stage's logic on this CPU at tiny sizes (CI)
#   bench/gpu_suite.sh --limits         # print the stage limits and check their sum
#   MGDL_FAST_SUITE_STAGES=smoke,bench bench/gpu_suite.sh               # only these stages
#
# The exit status is non-zero when any stage failed (its log says why). The denoise stage reads
# $MGDL_FAST_IMAGE (default bench/data/butterfly.gif, a gitignored copy of
# ../shared/images/butterfly.gif carried to the device; skimage's camera if it is absent).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# name:limit in seconds, in order of value. Their sum, the kill margin of every stage (a stage
# that ignores its SIGTERM is killed KILL_AFTER s later) and the limits of the steps around the
# stages (STEPS) are checked against BUDGET below.
LIMITS=(build:70 smoke:50 bench:55 tests:38 denoise:25 stream:18 compile:30)
DRY_LIMITS=(build:300 smoke:300 bench:600 tests:300 denoise:120 stream:120 compile:600)
STEPS=(deps:10 environment:10 summary:10)
BUDGET=330
KILL_AFTER=2

mode=${1:-run}
stages=0 around=0
for entry in "${LIMITS[@]}"; do stages=$((stages + ${entry#*:})); done
for entry in "${STEPS[@]}"; do around=$((around + ${entry#*:})); done
margins=$((KILL_AFTER * ${#LIMITS[@]}))
total=$((stages + margins + around))
limits_line="stage limits (s): ${LIMITS[*]//:/ } = $stages; kill margins $margins;\
 ${STEPS[*]//:/ }: $total of $BUDGET"
if [ "$total" -gt "$BUDGET" ]; then
  echo "gpu_suite: the limits sum to $total s, above the $BUDGET s budget" >&2
  exit 2
fi
if [ "$mode" = "--limits" ]; then
  echo "$limits_line"
  exit 0
fi
step_limit() {  # step_limit NAME: its limit in STEPS
  local entry
  for entry in "${STEPS[@]}"; do [ "${entry%%:*}" = "$1" ] && echo "${entry#*:}"; done
}
selected=${MGDL_FAST_SUITE_STAGES:-}
for name in ${selected//,/ }; do
  if [[ " ${LIMITS[*]} " != *" $name:"* ]]; then
    echo "gpu_suite: unknown stage '$name' in MGDL_FAST_SUITE_STAGES (stages: ${LIMITS[*]//:[0-9]*/})" >&2
    exit 2
  fi
done
DRY=0
[ "$mode" = "--dry-run" ] && DRY=1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHON=$PY PYTHONUNBUFFERED=1
# A bare copy of the tree (nothing installed) imports its own packages: mgdl_fast, bench, tests.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
commit=$(git describe --always --dirty 2>/dev/null || echo "${MGDL_FAST_COMMIT:-unknown}")
export MGDL_FAST_COMMIT="$commit"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$DRY" = 1 ]; then
  dir=${SUITE_DIR:-$(mktemp -d)/gpu_suite_dry}
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
  LIMITS=("${DRY_LIMITS[@]}")
else
  dir=${SUITE_DIR:-bench/results/${stamp}_${commit}}
fi
mkdir -p "$dir"
export MGDL_FAST_CACHE_DIR="$dir/cache"
image=${MGDL_FAST_IMAGE:-bench/data/butterfly.gif}
[ -f "$image" ] || image=""
echo "$limits_line"

{
  echo "command: $0 $*"
  echo "commit: $commit"
  echo "utc: $stamp"
  echo "dry_run: $DRY"
  echo "$limits_line"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
    echo "gpu: none (nvidia-smi unavailable)"
  echo "cpu cores: $(nproc)"
  timeout "$(step_limit environment)" "$PY" -c "import torch, platform; print('python', platform.python_version(), 'torch',
torch.__version__, 'cuda', torch.version.cuda, 'device',
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
} >"$dir/environment.txt" 2>&1
timeout "$(step_limit deps)" "$PY" bench/ensure_deps.py >"$dir/deps.log" 2>&1 ||
  echo "gpu_suite: installing the carried wheels failed (deps.log)"

wanted() {  # wanted NAME: the stage is selected by $MGDL_FAST_SUITE_STAGES (default: all)
  [ -z "${MGDL_FAST_SUITE_STAGES:-}" ] || [[ ",$MGDL_FAST_SUITE_STAGES," == *",$1,"* ]]
}

records() {  # records NAME: complete JSON lines the stage wrote
  local file=$dir/$1.jsonl
  [ -f "$file" ] || file=$dir/$1/progress.jsonl
  if [ -f "$file" ]; then grep -c '^{.*}$' "$file" || true; else echo 0; fi
}

summary=()
failed=0
stage() {  # stage NAME COMMAND...
  local name=$1 limit=
  shift
  wanted "$name" || return 0
  for entry in "${LIMITS[@]}"; do [ "${entry%%:*}" = "$name" ] && limit=${entry#*:}; done
  local start=$SECONDS
  MGDL_FAST_RECORDS="$dir/$name.jsonl" timeout --kill-after="$KILL_AFTER" "$limit" "$@" \
    >"$dir/$name.log" 2>&1
  local rc=$?
  local status=ok
  [ "$rc" = 0 ] || status="failed (exit $rc)"
  # 124: stopped by SIGTERM at the limit; 137: killed KILL_AFTER s later (or by the kernel).
  [ "$rc" = 124 ] && status="timed out after $limit s"
  [ "$rc" = 137 ] && [ $((SECONDS - start)) -ge "$limit" ] && status="timed out after $limit s"
  [ "$rc" = 0 ] || failed=1
  summary+=("$(printf '%-8s %-26s %4d s  %4s records' "$name" "$status" \
    $((SECONDS - start)) "$(records "$name")")")
  echo "${summary[-1]}"
}

bench_epoch=("$PY" -m pytest -q -p no:cacheprovider bench/bench_epoch.py)
gpu_tests=("$PY" -m pytest -q -p no:cacheprovider -p bench.pytest_records tests
  -m "gpu and not compile_heavy" --junitxml "$dir/tests.xml")
if [ "$DRY" = 1 ]; then
  stage build bash bench/suite_build.sh --dry-run
  stage smoke "$PY" bench/gpu_smoke.py --tiny
  stage bench "${bench_epoch[@]}" -k "not compile" --benchmark-disable
  stage tests "${gpu_tests[@]}" --timeout 60
  stage denoise "$PY" -m mgdl_fast fit ${image:+"$image"} --task denoise --crop 24 24 \
    --grades 2 --epochs 3 --record-every 1 --device cpu --quiet --out "$dir/denoise"
  stage stream "$PY" -m mgdl_fast fit ${image:+"$image"} --crop 48 48 --grades 2 \
    --epochs 3 --stream on --feature-store host --device cpu --quiet --out "$dir/stream"
  stage compile "${bench_epoch[@]}" -k compile --benchmark-disable
else
  timing=(--benchmark-enable --benchmark-min-rounds=10 --benchmark-max-time=0.5)
  stage build bash bench/suite_build.sh
  stage smoke "$PY" bench/gpu_smoke.py
  stage bench env MGDL_FAST_BENCH_SHAPES=headline "${bench_epoch[@]}" -k "not compile" \
    "${timing[@]}" --benchmark-json "$dir/epoch.json"
  stage tests "${gpu_tests[@]}" --timeout 20
  stage denoise "$PY" -m mgdl_fast fit ${image:+"$image"} --task denoise --preset paper \
    --grades "${MGDL_FAST_DENOISE_GRADES:-1}" --device cuda --quiet --out "$dir/denoise"
  stage stream "$PY" -m mgdl_fast fit ${image:+"$image"} --grades 2 --epochs 300 \
    --stream on --feature-store host --device cuda --quiet --out "$dir/stream"
  stage compile env MGDL_FAST_BENCH_SHAPES=headline "${bench_epoch[@]}" -k compile \
    "${timing[@]}"
fi

timeout "$(step_limit summary)" "$PY" bench/epoch_summary.py "$dir/bench.jsonl" "$dir/compile.jsonl" \
  >"$dir/epoch_summary.txt" 2>&1
{
  echo "$limits_line"
  cat "$dir/deps.log"
  printf '%s\n' "${summary[@]}"
  echo
  cat "$dir/epoch_summary.txt"
  [ -f "$dir/denoise.log" ] && tail -n 5 "$dir/denoise.log"
} >"$dir/summary.txt"
# Packed into a new file beside the folder (never one of the same name), then moved in.
archive=$(mktemp "$(dirname "$dir")/.results-XXXXXX")
tar -czf "$archive" -C "$(dirname "$dir")" "$(basename "$dir")"
chmod --reference="$dir/summary.txt" "$archive"
mv "$archive" "$dir/results.tar.gz"
if [ -n "${OUT:-}" ]; then
  cp "$dir/summary.txt" "$dir/results.tar.gz" "$OUT"/
fi
cat "$dir/summary.txt"
echo "results in $dir"
exit "$failed"
