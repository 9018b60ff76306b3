#!/usr/bin/env bash
# The full image-regression protocol (PROTOCOL 2) and the image learning-rate study (PROTOCOL 5)
# on the project's CPU, one run at a time: the runs behind docs/REPRODUCTION.md's "paper budget"
# tables. Usage:
#
#   scripts/paper_regression_cpu.sh JOB...      # e.g. camera_mgdl_s0 camera_sgdl_s0
#
# JOB is <image>_<model>_s<seed>[_e<epochs>] (image: camera, chart, butterfly; model: mgdl,
# sgdl; _e<epochs> caps the epochs per grade, SGDL's in total, at a stated fraction of 10,000),
# sweep_<optimizer> (the cameraman learning-rate grid of docs/REPRODUCTION.md) or
# adam_eig_<setting> (the Adam stability analysis of docs/ANALYSIS.md). Each run writes
# into $RUNS/<job>/ (default /work/runs24, outside the repository); an interrupted run resumes
# from the engine's own checkpoint (fit --resume) when the job is given again, a finished one is
# skipped. Jobs of every invocation queue on one lock, so a second invocation waits for the
# first. When a run finishes its metrics, console log and progress log (or JSON and figure) are
# copied to bench/results/cpu_repro/paper_regression/<job>/ (the analyses: .../adam_eig/<job>/);
# COMMIT=1 also commits that folder alone.
# Threads: OMP_NUM_THREADS (default 1) on a machine shared with other work.
#
# The runs import a snapshot of the committed package (git archive of HEAD into
# $RUNS/code-<commit>/, run with python -S -P so that neither the editable install nor the
# working directory comes first), so edits made while a queue runs cannot change a run half-way;
# the commit is recorded in every metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${VENV:-$REPO/.venv}
IMAGES=$(realpath "${IMAGES:-../shared/images}")
RUNS=${RUNS:-/work/runs24}
RESULTS=bench/results/cpu_repro/paper_regression
ANALYSES=bench/results/cpu_repro/adam_eig
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUNS" "$RESULTS"

export MGDL_FAST_COMMIT
MGDL_FAST_COMMIT=$(git describe --always --abbrev=12)
CODE="$RUNS/code-$MGDL_FAST_COMMIT"
if [ ! -d "$CODE" ]; then
  # Unpacked into a new folder of its own, then renamed: nothing existing is ever removed.
  unpacked=$(mktemp -d "$RUNS/.code-XXXXXX")
  git archive HEAD mgdl_fast kernels | tar -x -C "$unpacked"
  # The wheel ships the top-level kernels/ folder as mgdl_fast.kernels (pyproject.toml).
  mv "$unpacked/kernels" "$unpacked/mgdl_fast/kernels"
  mv -T "$unpacked" "$CODE"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mgdl_fast() {
  PYTHONPATH="$CODE:$SITE" "$VENV/bin/python" -S -P -m mgdl_fast "$@"
}

# The cameraman learning-rate grid: every rate of one optimizer, MGDL and SGDL, from the same
# init, on the image subsampled by 2 (128x128, 4,096 training pixels).
SWEEP_EPOCHS=${SWEEP_EPOCHS:-2000}
SWEEP_DOWNSAMPLE=${SWEEP_DOWNSAMPLE:-2}
SWEEP_LRS_GD=${SWEEP_LRS_GD:-0.1,0.3,1,1.25,1.5,1.75,2,3}
SWEEP_LRS_ADAM=${SWEEP_LRS_ADAM:-1e-4,1e-3,1e-2,3e-2,1e-1}

image_of() {
  case $1 in
    camera) echo "$IMAGES/cameraman.tif" ;;
    chart) echo "$IMAGES/resolutionchart.tiff" ;;
    butterfly) echo "$IMAGES/butterfly.gif" ;;
    *) echo "unknown image $1" >&2; return 2 ;;
  esac
}

status_of() {
  "$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$1" 2>/dev/null \
    || echo none
}

fit_job() {
  local job=$1 image model seed epochs out mode=() budget=()
  IFS=_ read -r image model seed epochs <<<"$job"
  [ -n "$epochs" ] && budget=(--epochs "${epochs#e}")
  out="$RUNS/$job"
  local status
  status=$(status_of "$out/metrics.json")
  if [ "$status" = complete ] || [ "$status" = diverged ]; then
    echo "== $job: already $status"
    [ -f "$RESULTS/$job/metrics.json" ] || collect "$job" "$out"/{metrics.json,progress.jsonl,curves.png}
    return 0
  fi
  [ -f "$out/manifest.json" ] && mode=(--resume)
  local cmd=(mgdl_fast fit "$(image_of "$image")" --model "$model" --seed "${seed#s}"
    --preset paper --precision fp32 --device cpu --out "$out" --quiet "${budget[@]}" "${mode[@]}")
  echo "== $job: ${cmd[*]}"
  # A diverged run is a result (exit status 1, its grades kept); an interrupted one is not.
  # (set -e does not act inside the "( ... ) || echo" below: every failure returns by hand.)
  run_logged "$job" "${cmd[@]}" || [ "$(status_of "$out/metrics.json")" = diverged ] || return 1
  collect "$job" "$out/metrics.json" "$out/progress.jsonl" "$out/curves.png"
}

# A sweep always runs with --resume: runs already in it are kept, so a finished sweep only
# rewrites its table and figure, and a longer grid trains only the new learning rates.
sweep_job() {
  local job=$1 optimizer=${1#sweep_} out="$RUNS/$1"
  local lrs="SWEEP_LRS_${optimizer^^}"
  local cmd=(mgdl_fast sweep-lr "$IMAGES/cameraman.tif" --optimizers "$optimizer"
    "--lrs-$optimizer" "${!lrs}" --epochs "$SWEEP_EPOCHS" --downsample "$SWEEP_DOWNSAMPLE"
    --out "$out" --resume)
  echo "== $job: ${cmd[*]}"
  run_logged "$job" "${cmd[@]}" || return 1
  collect "$job" "$out/sweep.json" "$out/sweep.md" "$out/sweep.png"
}

# The Adam stability analysis: PROTOCOL 4's networks and data, Adam at the papers' lr 1e-3,
# MGDL and SGDL for the same total number of iterations.
adam_eig_job() {
  local job=$1 out="$RUNS/$1" args
  if [ -f "$out/adam_eigenvalues.png" ]; then
    echo "== $job: already complete"
    return 0
  fi
  case ${job#adam_eig_} in
    synthetic1) args=(synthetic:1 --iterations 5000 --sgdl-iterations 20000 --interval 250) ;;
    chart) args=("$IMAGES/resolutionchart.tiff" --invert --iterations 2000 --sgdl-iterations 8000
      --interval 100) ;;
    *) echo "unknown analysis $job" >&2; return 2 ;;
  esac
  local cmd=(mgdl_fast analyze eig "${args[@]}" --optimizer adam --out "$out")
  echo "== $job: ${cmd[*]}"
  run_logged "$job" "${cmd[@]}" || return 1
  collect "$job" "$out"/eig_adam_{mgdl,sgdl}.json "$out/adam_eigenvalues.png"
}

run_logged() {
  local job=$1 start status=0
  shift
  start=$(date +%s)
  echo "\$ $* (commit $MGDL_FAST_COMMIT, OMP_NUM_THREADS=$OMP_NUM_THREADS)" >>"$RUNS/$job.log"
  "$@" >>"$RUNS/$job.log" 2>&1 || status=$?
  echo "exit $status, wall $(($(date +%s) - start)) s" >>"$RUNS/$job.log"
  return "$status"
}

collect() {
  local job=$1 dest="$RESULTS/$1"
  shift
  case $job in adam_eig_*) dest="$ANALYSES/$job" ;; esac
  mkdir -p "$dest"
  cp "$RUNS/$job.log" "$dest/console.log"
  for f in "$@"; do
    case $f in
      *.jsonl) gzip -c "$f" >"$dest/$(basename "$f").gz" ;;
      *) cp "$f" "$dest/" ;;
    esac
  done
  tail -n 2 "$dest/console.log"
  if [ "${COMMIT:-0}" = 1 ]; then
    # Another git command may hold the index for a moment: retry, never fail the queue.
    for _ in 1 2 3 4 5; do
      git add "$dest" && git commit -q -m "bench: paper-budget CPU run $job" -- "$dest" && break
      sleep 5
    done || true
  fi
}

for job in "$@"; do
  (
    flock 9
    case $job in
      sweep_*) sweep_job "$job" ;;
      adam_eig_*) adam_eig_job "$job" ;;
      *_*_s*) fit_job "$job" ;;
      *) echo "unknown job $job" >&2; exit 2 ;;
    esac
  ) 9>"$RUNS/.queue.lock" || echo "== $job: failed (see $RUNS/$job.log)"
done
