"""Learning-rate robustness (PROTOCOL 5): MGDL and SGDL trained at each learning rate of a grid,
with plain gradient descent and Adam; the final losses (and PSNRs) of every run."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace

from ...train.config import ModelConfig, TrainConfig
from ...train.trainer import fit
from .data import Data


def run_one(data: Data, model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict:
    """Train one configuration; return its row: final train/val/test loss and PSNR after the
    last grade (None if any grade diverged; ``kept_test_loss`` is then that of the grades kept
    before it), the grades finished, and why each stopped."""
    start = time.perf_counter()
    result = fit(data.task, data.objective, model_cfg, train_cfg, progress=False)
    final = result.records[-1].final if result.records else {}
    diverged = result.diverged is not None
    row = {
        "model": model_cfg.kind,
        "optimizer": train_cfg.optimizer,
        "lr": train_cfg.lr,
        "grades_done": len(result.records),
        "iterations": sum(r.epochs_run for r in result.records),
        "stop_reasons": [r.stop_reason for r in result.records],
        "diverged": str(result.diverged) if diverged else None,
        "diverged_grade": result.diverged.grade if result.diverged is not None else None,
        "diverged_epoch": result.diverged.epoch if result.diverged is not None else None,
        "kept_test_loss": final.get("test_loss"),
        "seconds": time.perf_counter() - start,
    }
    for split in ("train", "val", "test"):
        loss = final.get(f"{split}_loss", math.nan)
        # A run that diverged has no usable final loss, even if earlier grades finished.
        row[f"{split}_loss"] = None if diverged or not math.isfinite(loss) else loss
        # Peak-1 PSNR is only meaningful for images in [0, 1], not for the 1D functions.
        usable = row[f"{split}_loss"] is not None and data.kind == "image"
        row[f"{split}_psnr"] = final.get(f"{split}_psnr") if usable else None
    return row


def row_key(row: dict) -> tuple[str, float, str]:
    return row["optimizer"], row["lr"], row["model"]


def sweep(
    make_data: Callable[[], Data],
    models: list[ModelConfig],
    grids: dict[str, list[float]],
    train_cfg: TrainConfig,
    *,
    verbose: bool = False,
    done: list[dict] | None = None,
    on_row: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Every model in ``models`` with every optimizer in ``grids`` at each of its learning rates.

    ``make_data`` builds fresh data per run (the objective's residuals change as grades are
    fitted). ``train_cfg`` gives everything but the optimizer and the learning rate. Runs with
    a row in ``done`` (a resumed sweep) are not trained again; ``on_row`` is called with the
    rows so far after every new run (to save them). Rows come back in grid order.
    """
    finished = {row_key(r): r for r in done or []}
    rows = []
    for optimizer, lrs in grids.items():
        for lr in lrs:
            for model_cfg in models:
                key = (optimizer, lr, model_cfg.kind)
                if key in finished:
                    rows.append(finished[key])
                    continue
                cfg = replace(train_cfg, optimizer=optimizer, lr=lr)
                row = run_one(make_data(), model_cfg, cfg)
                rows.append(row)
                if on_row is not None:
                    on_row(rows)
                if verbose:
                    print(format_row(row), file=sys.stderr)
    return rows


def format_row(row: dict) -> str:
    """One progress line: the run, its final test loss (and PSNR when it has one), its time."""
    loss = "diverged" if row["test_loss"] is None else f"{row['test_loss']:.4e}"
    psnr = f"  test PSNR {row['test_psnr']:.2f}" if row["test_psnr"] is not None else ""
    return (
        f"{row['model']:5s} {row['optimizer']:4s} lr {row['lr']:<8g} test loss {loss}{psnr}  "
        f"({row['iterations']} its, {row['seconds']:.1f} s)"
    )


def markdown_table(rows: list[dict], *, psnr: bool = True) -> str:
    """Rows as a Markdown table: one line per (optimizer, lr), the models side by side, with
    the final test loss (and PSNR for images; peak-1 PSNR means nothing for the 1D functions)."""
    models = sorted({r["model"] for r in rows})
    per_model = 2 if psnr else 1
    names = [
        f"{m.upper()} test loss" + (f" | {m.upper()} test PSNR" if psnr else "") for m in models
    ]
    lines = [
        "| optimizer | lr | " + " | ".join(names) + " |",
        "|" + "---|" * (2 + per_model * len(models)),
    ]
    keys = sorted({(r["optimizer"], r["lr"]) for r in rows})
    for optimizer, lr in keys:
        cells = [optimizer, f"{lr:g}"]
        for model in models:
            match = [
                r for r in rows if (r["optimizer"], r["lr"], r["model"]) == (optimizer, lr, model)
            ]
            if not match:
                cells += ["-"] * per_model
            elif match[0]["test_loss"] is None:
                cells += [_diverged_cell(match[0])] + ["-"] * (per_model - 1)
            else:
                cells.append(f"{match[0]['test_loss']:.4e}")
                cells += [f"{match[0]['test_psnr']:.2f}"] if psnr else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diverged_cell(row: dict) -> str:
    """Where a run diverged: its grade and, when recorded, the epoch within that grade."""
    grade = row.get("diverged_grade") or row["grades_done"] + 1
    epoch = row.get("diverged_epoch")
    return f"diverged (grade {grade}" + (f", epoch {epoch})" if epoch is not None else ")")
