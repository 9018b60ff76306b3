"""The paper-budget regression tables of docs/REPRODUCTION.md, from the committed runs.

    python bench/paper_regression_table.py [DIR]

DIR (default bench/results/cpu_repro/paper_regression) holds one folder per run of
scripts/paper_regression_cpu.sh, named <image>_<model>_s<seed>, each with its metrics.json.
Prints two Markdown tables: every grade of every run (test PSNR, epochs, why it stopped, time
per epoch), then MGDL against SGDL per image and seed (final test and validation PSNR, gains,
training time).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).parent / "results" / "cpu_repro" / "paper_regression"


def load_runs(folder: Path) -> dict[tuple[str, str, int], dict]:
    """(image, model, seed) -> metrics.json of every finished or interrupted run in ``folder``."""
    runs = {}
    for path in sorted(folder.glob("*_*_s*/metrics.json")):
        image, model, seed = path.parent.name.split("_")
        runs[(image, model, int(seed[1:]))] = json.loads(path.read_text())
    return runs


def grade_table(runs: dict) -> str:
    lines = [
        "| run | status | grade | test PSNR (dB) | epochs | stopped by | ms / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for (image, model, seed), metrics in runs.items():
        for g in metrics["grades"]:
            ms = 1000 * g["time_s"] / max(g["epochs_run"], 1)
            lines.append(
                f"| {image} {model.upper()} seed {seed} | {metrics['status']} | {g['grade']} | "
                f"{g['final']['test_psnr']:.3f} | {g['epochs_run']:,} | {g['stop_reason']} | "
                f"{ms:.0f} |"
            )
    return "\n".join(lines)


def _final(metrics: dict | None, split: str) -> float | None:
    """The last grade's PSNR on ``split`` of a complete run (None otherwise)."""
    if metrics is None or metrics["status"] != "complete":
        return None
    return metrics["grades"][-1]["final"][f"{split}_psnr"]


def gain_table(runs: dict) -> str:
    """MGDL against SGDL on the test split (the whole image, the papers' figure) and on the
    validation pixels alone (odd rows and columns, never trained on)."""
    lines = [
        "| image | seed | MGDL test PSNR | SGDL test PSNR | gain (dB) | MGDL val PSNR | "
        "SGDL val PSNR | val gain (dB) | MGDL time (s) | SGDL time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    pairs = sorted({(image, seed) for image, _, seed in runs})
    for image, seed in pairs:
        mgdl, sgdl = runs.get((image, "mgdl", seed)), runs.get((image, "sgdl", seed))
        cells = [image, str(seed)]
        for split in ("test", "val"):
            a, b = _final(mgdl, split), _final(sgdl, split)
            cells += [f"{v:.3f}" if v is not None else "-" for v in (a, b)]
            cells.append(f"{a - b:+.2f}" if a is not None and b is not None else "-")
        for metrics in (mgdl, sgdl):
            cells.append(f"{metrics['total_time_s']:.0f}" if metrics else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else DEFAULT
    runs = load_runs(folder)
    print(grade_table(runs))
    print()
    print(gain_table(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
