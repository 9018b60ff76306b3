"""The paper-budget regression tables of docs/REPRODUCTION.md, from the committed runs.

    python bench/paper_regression_table.py [DIR]

DIR (default bench/results/cpu_repro/paper_regression) holds one folder per run of
scripts/paper_regression_cpu.sh, named <image>_<model>_s<seed>[_e<epochs>], each with its
metrics.json (``_e<epochs>``: the epochs per grade were capped there; none: the papers' 10,000).
Prints three Markdown tables: every grade of every run (test PSNR, epochs, why it stopped, time
per epoch); MGDL against SGDL per image, budget and seed (final test and validation PSNR,
gains, training time); and per image and budget over its seeds, the mean and range of each.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

DEFAULT = Path(__file__).parent / "results" / "cpu_repro" / "paper_regression"
FULL_BUDGET = 10_000

# (image, epochs per grade, model, seed)
RunKey = tuple[str, int, str, int]


def load_runs(folder: Path) -> dict[RunKey, dict]:
    """Every finished or interrupted run in ``folder``, by (image, budget, model, seed)."""
    runs = {}
    for path in sorted(folder.glob("*_*_s*/metrics.json")):
        image, model, seed, *cap = path.parent.name.split("_")
        budget = int(cap[0][1:]) if cap else FULL_BUDGET
        runs[(image, budget, model, int(seed[1:]))] = json.loads(path.read_text())
    return dict(sorted(runs.items(), key=lambda item: (item[0][0], -item[0][1], *item[0][2:])))


def grade_table(runs: dict[RunKey, dict]) -> str:
    lines = [
        "| run | epochs cap | status | grade | test PSNR (dB) | epochs | stopped by | ms / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (image, budget, model, seed), metrics in runs.items():
        for g in metrics["grades"]:
            ms = 1000 * g["time_s"] / max(g["epochs_run"], 1)
            lines.append(
                f"| {image} {model.upper()} seed {seed} | {budget:,} | {metrics['status']} | "
                f"{g['grade']} | {g['final']['test_psnr']:.3f} | {g['epochs_run']:,} | "
                f"{g['stop_reason']} | {ms:.0f} |"
            )
    return "\n".join(lines)


def _last_psnr(metrics: dict, split: str) -> float:
    return metrics["grades"][-1]["final"][f"{split}_psnr"]


def _final(metrics: dict | None, split: str) -> float | None:
    """The last grade's PSNR on ``split`` of a complete run (None otherwise)."""
    if metrics is None or metrics["status"] != "complete":
        return None
    return _last_psnr(metrics, split)


def _pairs(runs: dict[RunKey, dict]) -> list[tuple[str, int, int, dict | None, dict | None]]:
    """(image, budget, seed, MGDL metrics, SGDL metrics) for every image, budget and seed."""
    keys = sorted({(i, b, s) for i, b, _, s in runs}, key=lambda k: (k[0], -k[1], k[2]))
    return [(i, b, s, runs.get((i, b, "mgdl", s)), runs.get((i, b, "sgdl", s))) for i, b, s in keys]


def gain_table(runs: dict[RunKey, dict]) -> str:
    """MGDL against SGDL on the test split (the whole image, the papers' figure) and on the
    validation pixels alone (odd rows and columns, never trained on)."""
    lines = [
        "| image | epochs cap | seed | MGDL test PSNR | SGDL test PSNR | gain (dB) | "
        "MGDL val PSNR | SGDL val PSNR | val gain (dB) | MGDL time (s) | SGDL time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for image, budget, seed, mgdl, sgdl in _pairs(runs):
        cells = [image, f"{budget:,}", str(seed)]
        for split in ("test", "val"):
            a, b = _final(mgdl, split), _final(sgdl, split)
            cells += [f"{v:.3f}" if v is not None else "-" for v in (a, b)]
            cells.append(f"{a - b:+.2f}" if a is not None and b is not None else "-")
        for metrics in (mgdl, sgdl):
            cells.append(f"{metrics['total_time_s']:.0f}" if metrics else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread(values: list[float], sign: str = "") -> str:
    """``mean (min to max)``; ``sign="+"`` writes the sign of every figure."""
    mean, low, high = statistics.mean(values), min(values), max(values)
    return f"{mean:{sign}.3f} ({low:{sign}.3f} to {high:{sign}.3f})"


def seed_table(runs: dict[RunKey, dict]) -> str:
    """Per image and budget with complete pairs: mean (min - max) over seeds of the final test
    PSNRs and of the gain, on the test and the validation split."""
    lines = [
        "| image | epochs cap | seeds | MGDL test PSNR | SGDL test PSNR | gain (dB) | "
        "val gain (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], list[tuple[int, dict, dict]]] = {}
    for image, budget, seed, mgdl, sgdl in _pairs(runs):
        if mgdl and sgdl and mgdl["status"] == sgdl["status"] == "complete":
            groups.setdefault((image, budget), []).append((seed, mgdl, sgdl))
    for (image, budget), members in groups.items():
        seeds = ", ".join(str(seed) for seed, _, _ in members)
        mgdl_test = [_last_psnr(m, "test") for _, m, _ in members]
        sgdl_test = [_last_psnr(s, "test") for _, _, s in members]
        gains = [a - b for a, b in zip(mgdl_test, sgdl_test)]
        val_gains = [_last_psnr(m, "val") - _last_psnr(s, "val") for _, m, s in members]
        lines.append(
            f"| {image} | {budget:,} | {seeds} | {_spread(mgdl_test)} | {_spread(sgdl_test)} | "
            f"{_spread(gains, '+')} | {_spread(val_gains, '+')} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else DEFAULT
    runs = load_runs(folder)
    print(grade_table(runs))
    print()
    print(gain_table(runs))
    print()
    print(seed_table(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
