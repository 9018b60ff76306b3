"""The table printed at the end of a fit."""

from __future__ import annotations

from pathlib import Path

from ..train.trainer import FitResult

# Regression reports PSNR per split; denoising/deblurring one PSNR against the clean image.
_METRICS = ("train_psnr", "val_psnr", "test_psnr", "psnr")


def grade_line(record, grades_done: int, total: int) -> str:
    """One line when a grade finishes (shown even with --quiet)."""
    metrics = ", ".join(
        f"{m.replace('_', ' ')} {record.final[m]:.2f} dB" for m in _METRICS if m in record.final
    )
    return (
        f"grade {grades_done}/{total}: {record.epochs_run} epochs ({record.stop_reason}) "
        f"in {record.time_s:.1f} s; {metrics}"
    )


def print_summary(result: FitResult, out: Path) -> None:
    names = [m for m in _METRICS if result.records and m in result.records[0].final]
    header = f"{'grade':>5} {'epochs':>7} {'stopped by':>15} {'time (s)':>9}"
    header += "".join(f" {m.replace('_', ' '):>11}" for m in names)
    print(header)
    for r in result.records:
        row = f"{r.grade:>5} {r.epochs_run:>7} {r.stop_reason:>15} {r.time_s:>9.2f}"
        row += "".join(f" {r.final[m]:>11.3f}" for m in names)
        print(row)
    total = sum(r.time_s for r in result.records)
    print(f"total {total:.2f} s; backends {result.backends}; outputs in {out}")
