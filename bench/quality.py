"""PSNR against wall time (docs/QUALITY.md): the papers' protocol, Fourier features, the bf16
CPU path and both, at equal budgets, over seeds, each run a ``mgdl-fast fit`` command.

    python bench/quality.py --out bench/results/cpu_quality.json
    python bench/quality.py --images cameraman --seeds 0 --epochs 50   # a quick look

Every run is a fresh process (one at a time, so the wall times are comparable); its command,
final test PSNR per grade and wall time are recorded. Prints a markdown table of mean and
spread (min..max) per image and variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
# Image name -> (source, extra fit options): 256^2 sizes, so 36 runs fit in an hour on 2 cores.
IMAGES = {
    "cameraman": (SHARED / "cameraman.tif", []),
    "butterfly": (SHARED / "butterfly.gif", ["--crop", "256", "256"]),
    "astronaut": ("astronaut", ["--crop", "256", "256"]),
}
VARIANTS = {
    "protocol": ["--encoding", "none", "--precision", "fp32"],
    "fourier": ["--encoding", "fourier", "--precision", "fp32"],
    "bf16": ["--encoding", "none", "--precision", "bf16"],
    "fourier+bf16": ["--encoding", "fourier", "--precision", "bf16"],
}


def image_path(name: str, folder: Path) -> Path | None:
    source, _ = IMAGES[name]
    if source == "astronaut":
        path = folder / "astronaut.npy"
        if not path.exists():
            np.save(path, data.astronaut())
        return path
    return source if Path(source).exists() else None


def run(image: Path, options: list[str], seed: int, epochs: int, folder: Path) -> dict:
    out = folder / f"run_{time.monotonic_ns()}"
    command = ["mgdl-fast", "fit", str(image), *options, "--seed", str(seed), "--grades", "4",
               "--epochs", str(epochs), "--no-early-stop", "--quiet",
               "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mgdl_fast", *command[1:]], check=True, capture_output=True
    )
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    psnr = [g["final"]["test_psnr"] for g in metrics["grades"]]
    return {"command": " ".join(command), "seed": seed, "wall_s": wall,
            "train_s": metrics["total_time_s"], "test_psnr": psnr}  # fmt: skip


def table(results: dict) -> str:
    lines = ["| image | variant | final test PSNR (dB), mean (min..max) | wall s, mean |",
             "|---|---|---|---|"]  # fmt: skip
    for name, variants in results.items():
        for variant, runs in variants.items():
            final = [r["test_psnr"][-1] for r in runs]
            wall = statistics.mean(r["wall_s"] for r in runs)
            spread = f"{statistics.mean(final):.2f} ({min(final):.2f}..{max(final):.2f})"
            lines.append(f"| {name} | {variant} | {spread} | {wall:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=",".join(IMAGES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", default="bench/results/cpu_quality.json")
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="mgdl_quality_") as tmp:
        folder = Path(tmp)
        for name in args.images.split(","):
            image = image_path(name, folder)
            if image is None:
                print(f"skipping {name}: {IMAGES[name][0]} not found", file=sys.stderr)
                continue
            results[name] = {}
            for variant in args.variants.split(","):
                options = IMAGES[name][1] + VARIANTS[variant]
                runs = [run(image, options, int(s), args.epochs, folder)
                        for s in args.seeds.split(",")]  # fmt: skip
                results[name][variant] = runs
                finals = ", ".join(f"{r['test_psnr'][-1]:.2f}" for r in runs)
                print(f"{name} {variant}: {finals} dB", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
