#!/usr/bin/env bash
# The CPU-scale runs behind docs/REPRODUCTION.md and docs/ANALYSIS.md, one after another (about
# 65 minutes on 2 cores). Each command's output goes to $OUT/<name>.log and its files to
# $OUT/<name>/. Images come from ../shared/images (IMAGES=... to point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
IMAGES=${IMAGES:-../shared/images}
OUT=${OUT:-runs/repro}
export PATH="$VENV/bin:$PATH"
mkdir -p "$OUT"

run() {
  local name=$1
  shift
  echo "== $name: $*"
  # A rerun replaces its own earlier output (fit refuses a directory that holds a run).
  rm -rf "${OUT:?}/$name"
  { echo "\$ $*"; /usr/bin/time -f "wall %e s" "$@" --out "$OUT/$name"; } >"$OUT/$name.log" 2>&1
  tail -n 3 "$OUT/$name.log"
}

camera="$IMAGES/cameraman.tif"
butterfly="$IMAGES/butterfly.gif"
crop=(--crop 128 128)

run fit_default mgdl-fast fit --quiet
run regression_mgdl mgdl-fast fit "$camera" --quiet
run regression_sgdl mgdl-fast fit "$camera" --model sgdl --quiet
python bench/feature_cache.py "$camera" --epochs 300 --repeats 3 \
  --out "$OUT/feature_cache_cameraman.json" >"$OUT/feature_cache.log" 2>&1

run denoise_mgdl mgdl-fast fit "$butterfly" --task denoise --noise 10 "${crop[@]}" --epochs 2000 --quiet
run denoise_sgdl mgdl-fast fit "$butterfly" --task denoise --noise 10 "${crop[@]}" --epochs 2000 \
  --model sgdl --quiet
run deblur_mgdl mgdl-fast fit "$butterfly" --task deblur --blur 3 --noise 3 "${crop[@]}" --epochs 2000 --quiet
run deblur_sgdl mgdl-fast fit "$butterfly" --task deblur --blur 3 --noise 3 "${crop[@]}" --epochs 2000 \
  --model sgdl --quiet

run approx_1 mgdl-fast approx --setting 1 --quiet
run approx_2 mgdl-fast approx --setting 2 --quiet
run approx_2d mgdl-fast approx --setting 2d --quiet
run approx_1_paper_mgdl mgdl-fast approx --setting 1 --preset paper --models mgdl --quiet
run approx_1_paper_sgdl_msdl mgdl-fast approx --setting 1 --preset paper --models sgdl,msdl --quiet
run approx_1_paper_msdl_full mgdl-fast approx --setting 1 --preset paper --models msdl \
  --no-early-stop --quiet
for seed in 1 2 3 4; do
  run "approx_1_msdl_seed$seed" mgdl-fast approx --setting 1 --models msdl --seed "$seed" --quiet
done

run eig_synthetic2 mgdl-fast analyze eig synthetic:2 --iterations 20000 --sgdl-iterations 80000 --quiet
run eig_cameraman_w128 mgdl-fast analyze eig "$camera" --model mgdl --width 128 --layers 2 \
  --eta 0.1 --iterations 2000 --interval 200 --quiet
run sweep_synthetic1 mgdl-fast sweep-lr synthetic:1 --epochs 5000 --quiet
run sweep_cameraman mgdl-fast sweep-lr "$camera" --downsample 2 --epochs 500 --quiet
python -m mgdl_fast.analysis.accuracy synthetic:2 --model sgdl --width 32 --grades 4 --eta 5e-3 \
  --steps 2000 --json "$OUT/lanczos_accuracy_sgdl3265.json" >"$OUT/lanczos_accuracy.log" 2>&1
