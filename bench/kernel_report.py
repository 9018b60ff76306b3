"""The kernel report: what the compilers say about every backend's kernels at the headline
shapes, as JSON, a table and (``--check``) the CI checks. No GPU needed.

    python bench/kernel_report.py --json FILE [--backends triton,cuda] [--check]

Each backend has a module ``bench/kernel_report_<backend>.py`` with ``records()`` (one dict per
kernel per headline variant) and ``violations(records)`` (the CI checks; empty = pass). A module
that cannot run here raises, and the report names it as a failure rather than passing silently.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLUMNS = (
    ("kernel", 16), ("shape", 22), ("dtype", 5), ("registers", 4), ("spill_bytes", 5),
    ("smem_bytes", 7), ("mma_issued_flop_per_row", 8), ("mma_needed_flop_per_row", 8),
    ("global_reduction_bytes_per_row", 8), ("vector_reductions", 5),
    ("weight_loads_in_loop", 4), ("compile_s", 6), ("bound_s_per_128_rows", 9),
)  # fmt: skip
HEADERS = ("kernel", "shape", "dtype", "regs", "spill", "smem", "issued", "needed", "red B/row",
           "vec", "wld", "comp s", "bound s")  # fmt: skip


def table(records: list[dict]) -> str:
    """A fixed-width table of the records, one line per kernel."""
    lines = ["backend " + " ".join(f"{h:>{w}}" for h, (_, w) in zip(HEADERS, COLUMNS))]
    for rec in records:
        cells = []
        for key, width in COLUMNS:
            value = rec.get(key, "")
            if key == "shape":
                value = ",".join(map(str, value))
            cells.append(f"{value!s:>{width}}")
        lines.append(f"{rec['backend']:7} " + " ".join(cells))
    return "\n".join(lines)


def collect(backends: list[str]) -> tuple[list[dict], list[str]]:
    """All records and violations; a backend whose module cannot run adds one violation."""
    records, problems = [], []
    for name in backends:
        try:
            module = importlib.import_module(f"bench.kernel_report_{name}")
            found = module.records()
        except Exception as exc:  # a backend that cannot report is a failure, not a pass
            problems.append(
                f"{name}: cannot produce its kernel report: {type(exc).__name__}: {exc}"
            )
            continue
        records += found
        problems += module.violations(found)
    return records, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="write every record to this file")
    parser.add_argument("--backends", default="triton,cuda", help="comma-separated backends")
    parser.add_argument("--check", action="store_true", help="exit 1 on any violation")
    args = parser.parse_args(argv)
    records, problems = collect([b for b in args.backends.split(",") if b])
    Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    print(table(records))
    for problem in problems:
        print(f"VIOLATION {problem}")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
