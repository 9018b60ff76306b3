"""Time grade 4 with the feature cache against the same grade recomputing grades 1-3 every epoch.

Grades 1-3 are trained once; then grade 4 is trained from the same initialisation with
(a) cached grade-3 features and (b) features recomputed through the frozen grades each time
they are read, alternating (a) and (b) ``--repeats`` times in one process. Prints medians and
their ratio and writes the raw timings as JSON.

    python bench/feature_cache.py ../shared/images/cameraman.tif --epochs 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import mgdl_fast as mf
from mgdl_fast.io.environment import environment
from mgdl_fast.tasks.regression import RegressionObjective
from mgdl_fast.train.early_stop import ValidationSmoothing
from mgdl_fast.train.features import FeatureCache, MemoryStore, RecomputedFeatures, freeze_grade
from mgdl_fast.train.loop import Grade, run_grade
from mgdl_fast.train.optim import GradeOptimizer
from mgdl_fast.train.trainer import bind_grade, grade_shapes


def time_grade(params0, inputs, objective, cfg, device) -> float:
    """Bind, then train grade 4 from ``params0`` on ``inputs``; the wall time in seconds."""
    params = params0.clone()
    rule = ValidationSmoothing(cfg.record_every, cfg.smooth_window, cfg.rel_tol)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    engine = bind_grade(params.shape, inputs, objective, cfg)
    objective.start_grade(engine, inputs, params)
    optimizer = GradeOptimizer(engine, cfg.optimizer, cfg.lr, params.flat.numel())
    run_grade(Grade(4, 4, params, inputs, objective, optimizer), cfg, rule)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="image file (default: skimage's cameraman)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="bench/results/feature_cache.json")
    args = parser.parse_args()

    image = mf.load_image(args.image) if args.image else mf.default_image()
    model_cfg = mf.ModelConfig()
    cfg = mf.TrainConfig(epochs=args.epochs, device=args.device, early_stopping=False)
    device = cfg.torch_device()
    task = mf.RegressionTask(image.pixels, device=device)
    objective = RegressionObjective(task)
    first3 = mf.fit(task, objective, mf.ModelConfig(grades=3), cfg, progress=False)
    coords = {n: task.splits[n].x for n in objective.splits}
    dtype = cfg.feature_dtype(device)
    cached, recomputed = FeatureCache(coords), RecomputedFeatures(coords, dtype)
    for params in first3.model.grades:
        engine = bind_grade(params.shape, cached, objective, cfg)
        rows = {s: cached.rows(s) for s in objective.splits}
        store = MemoryStore(rows, params.shape.width, dtype, device)
        cached, _, _ = freeze_grade(engine, params, cached, objective.splits, store)
        recomputed.add_grade(params, engine)
    params0 = mf.BlockParams.init(
        grade_shapes(model_cfg, 2, task.out_dim)[3], seed=0, device=device
    )

    times = {"cached": [], "recomputed": []}
    for _ in range(args.repeats):
        times["cached"].append(time_grade(params0, cached, objective, cfg, device))
        times["recomputed"].append(time_grade(params0, recomputed, objective, cfg, device))
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["recomputed"] / medians["cached"]
    print(f"grade 4, {args.epochs} epochs, {image.height}x{image.width}, device {device}")
    print(f"  cached features:    median {medians['cached']:.3f} s  {times['cached']}")
    print(f"  recomputed 1-3:     median {medians['recomputed']:.3f} s  {times['recomputed']}")
    print(
        f"  recompute / cache = {ratio:.2f}x (median of each); per pair: "
        + ", ".join(f"{r / c:.2f}x" for c, r in zip(times["cached"], times["recomputed"]))
    )
    result = {
        "image": image.source,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "times_s": times,
        "median_s": medians,
        "ratio": ratio,
        "environment": environment(device),
        "command": " ".join(["python", *sys.argv]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
