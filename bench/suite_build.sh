#!/usr/bin/env bash
# The build stage of bench/gpu_suite.sh: mgdl_fast._C for the GPU in hand on every core (sm_90a
# only, one translation unit per training-kernel width, so ninja compiles them at once), while
# bench/prewarm_triton.py compiles the headline Triton kernels into Triton's cache in worker
# processes on the other cores. Fails if either fails; the suite's next stages run regardless
# (the Triton backend and the bench scripts do not need _C).
#
#   bench/suite_build.sh             # on the GPU machine (editable install, no dependencies)
#   bench/suite_build.sh --dry-run   # CPU: the prewarm at tiny sizes, and _C imported
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
cores=$(nproc)
if [ "${1:-}" = "--dry-run" ]; then
  "$PY" bench/prewarm_triton.py --jobs 2 --tiny &
  warm=$!
  "$PY" -c "import mgdl_fast._C as c; print('_C widths', c.WIDTHS)"
  built=$?
else
  "$PY" bench/prewarm_triton.py --jobs $((cores > 2 ? cores / 2 : 1)) &
  warm=$!
  start=$SECONDS
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${MGDL_FAST_CUDA_ARCHS:-90a-real}" \
    CMAKE_BUILD_PARALLEL_LEVEL=$cores MGDL_FAST_CUDA=ON \
    "$PY" -m pip install -q --no-build-isolation --no-deps -e .
  built=$?
  echo "_C build: exit $built after $((SECONDS - start)) s on $cores cores"
fi
wait "$warm"
warmed=$?
echo "build exit $built; Triton prewarm exit $warmed"
[ "$built" = 0 ] && [ "$warmed" = 0 ]
