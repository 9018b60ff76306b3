"""The Adam stability tables of docs/ANALYSIS.md from ``analyze eig --optimizer adam`` output.

    python bench/adam_stability_table.py eig_adam_mgdl.json eig_adam_sgdl.json ...

One row per grade (SGDL: its one block): parameters, iterations, the largest ratio
lambda_max(P H) / threshold seen and where, the first iteration at 0.9 x the threshold or above,
the share of spectra there, lambda_max(H) and the training loss at the first and last spectrum,
and the grade's final test loss.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EDGE = 0.9


def grade_rows(run: dict) -> list[str]:
    model = run["config"]["model"]["kind"].upper()
    rows = []
    for grade in run["grades"]:
        evals = [e for e in run["evaluations"] if e["grade"] == grade["grade"]]
        if not evals:
            continue
        top = max(evals, key=lambda e: e["ratio"])
        edge = [e for e in evals if e["ratio"] >= EDGE]
        first_edge = f"{edge[0]['iteration']:,}" if edge else "never"
        first, last = evals[0], evals[-1]
        name = f"{model} grade {grade['grade']}" if model == "MGDL" else model
        sharp = f"{first['hessian']['largest'][-1]:.3g} -> {last['hessian']['largest'][-1]:.3g}"
        rows.append(
            f"| {name} | {grade['params']:,} | {grade['iterations']:,} | "
            f"{top['ratio']:.3f} (it. {top['iteration']:,}) | {first_edge} | "
            f"{len(edge)}/{len(evals)} | {sharp} | "
            f"{first['train_loss']:.3e} -> {last['train_loss']:.3e} | "
            f"{grade['final']['test_loss']:.3e} |"
        )
    return rows


def main(paths: list[str]) -> None:
    print(
        "| model | params | iterations | max lambda_max(PH) / threshold | first at >= 0.9 | "
        "spectra >= 0.9 | lambda_max(H), first -> last | train loss, first -> last | "
        "test loss |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        for row in grade_rows(json.loads(Path(path).read_text())):
            print(row)


if __name__ == "__main__":
    main(sys.argv[1:])
