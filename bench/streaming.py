"""Streaming overhead: a grade trained in memory against the same grade streamed (chunked
full-batch steps, coordinates made per chunk; features in memory or on disk), alternated in
one process. Prints the medians of each and their ratios, writes the raw timings as JSON.

    python bench/streaming.py --size 1024 --epochs 20 --repeats 3
    python bench/streaming.py --encoding fourier --out bench/results/cpu_streaming_1024_fourier.json

Each repeat trains grade 1 and grade 2 (so grade 2 reads cached features) from the same
initialisation in every mode; the timed span is the whole fit (binds, epochs, freezes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data, transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mgdl_fast as mf  # noqa: E402
from mgdl_fast.io.environment import environment  # noqa: E402
from mgdl_fast.io.lazy import open_lazy  # noqa: E402
from mgdl_fast.tasks.lattice import StreamedRegressionTask
from mgdl_fast.tasks.regression import RegressionObjective  # noqa: E402

MODES = {
    "memory": {},
    "streamed": {"stream": True},
    "streamed-disk": {"stream": True, "feature_store": "disk"},
}


def camera_npy(side: int, folder: Path) -> Path:
    """skimage's cameraman resized to ``side`` x ``side``, as an 8-bit .npy (read lazily)."""
    pixels = transform.resize(data.camera(), (side, side), preserve_range=True)
    path = folder / f"camera{side}.npy"
    np.save(path, np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return path


def time_fit(mode: str, path: Path, epochs: int, work: Path, encoding: str) -> float:
    options = MODES[mode]
    cfg = mf.TrainConfig(epochs=epochs, early_stopping=False, device="cpu", **options)
    image = open_lazy(path)
    start = time.perf_counter()
    task = (
        StreamedRegressionTask(image)
        if options.get("stream")
        else mf.RegressionTask(image.load().pixels)
    )
    model = mf.ModelConfig(grades=2, encoding=encoding)
    mf.fit(task, RegressionObjective(task), model, cfg, progress=False, work_dir=work / mode)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoding", default="none", help="grade 1's input encoding (none)")
    parser.add_argument("--out", default="bench/results/cpu_streaming_1024.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="mgdl_stream_bench_") as folder:
        path = camera_npy(args.size, Path(folder))
        for repeat in range(args.repeats):
            for mode in MODES:
                seconds = time_fit(mode, path, args.epochs, Path(folder), args.encoding)
                times[mode].append(seconds)
                print(f"repeat {repeat + 1}: {mode:14s} {times[mode][-1]:.2f} s", flush=True)
    medians = {mode: statistics.median(t) for mode, t in times.items()}
    ratios = {mode: medians[mode] / medians["memory"] for mode in MODES}
    for mode in MODES:
        print(f"{mode:14s} median {medians[mode]:.2f} s  ({ratios[mode]:.2f}x in-memory)")
    record = {
        "size": args.size, "grades": 2, "epochs_per_grade": args.epochs, "encoding": args.encoding,
        "repeats": args.repeats, "times_s": times, "median_s": medians,
        "ratio_to_memory": ratios, "environment": environment(mf.TrainConfig().torch_device()),
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
