"""Every timed epoch record of a GPU session, stated against the best torch provider of the
same run and shape (eager, torch.compile, each in fp32 and bf16 autocast, and the torch
backend): the ratio a kernel target is judged by.

    python bench/epoch_summary.py RESULTS/bench.jsonl [RESULTS/compile.jsonl ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.records import read  # noqa: E402

TORCH_PROVIDERS = ("torch", "torch-graph", "eager", "eager-bf16", "compile", "compile-bf16")


def summarize(records: list[dict]) -> list[str]:
    """One line per timed record: s/epoch, pixels/s, % of the bf16 roofline, and the speed-up
    over the fastest torch provider of its shape (named)."""
    timed = [r for r in records if r.get("s_per_epoch")]
    if not timed:
        return ["no timed epoch records (benchmarks disabled, or the stage ran none)"]
    lines = [f"{'shape':20} {'provider':13} {'precision':9} {'ms/epoch':>9} {'Mpix/s':>8} "
             f"{'% roof':>6}  vs best torch provider"]  # fmt: skip
    for shape in dict.fromkeys(r["shape"] for r in timed):
        rows = [r for r in timed if r["shape"] == shape]
        torch_rows = [r for r in rows if r["provider"] in TORCH_PROVIDERS]
        best = min(torch_rows, key=lambda r: r["s_per_epoch"]) if torch_rows else None
        for r in sorted(rows, key=lambda r: r["s_per_epoch"]):
            versus = (
                f"{best['s_per_epoch'] / r['s_per_epoch']:.2f}x {best['provider']}"
                if best else "no torch provider timed"
            )  # fmt: skip
            lines.append(
                f"{shape:20} {r['provider']:13} {r.get('precision', '?'):9} "
                f"{1e3 * r['s_per_epoch']:9.3f} {r['pixels_per_s'] / 1e6:8.1f} "
                f"{r['pct_bf16_roofline']:6.2f}  {versus}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="JSON-lines files of bench_epoch.py")
    args = parser.parse_args(argv)
    print("\n".join(summarize([r for path in args.records for r in read(path)])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
