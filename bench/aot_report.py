"""Print the sm_90 compile report of every Triton kernel variant: shared memory, wgmma count,
registers and spills per thread (``ptxas -v``), compile time. No GPU needed.

    python bench/aot_report.py [VARIANT ...]        # variants: tests/test_triton_aot.py

Set MGDL_FAST_TRITON_TILE / MGDL_FAST_TRITON_FWD_TILE ("BLOCK_M,NUM_WARPS,CHUNK") to compare
tile shapes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_triton_aot as aot  # noqa: E402


def main(names: list[str]) -> None:
    rows = aot.run_workers(names or list(aot.VARIANTS), os.cpu_count() or 1, with_ptxas=True)
    columns = ("BM", "WC", "warps", "smem", "wgmma", "regs", "spill", "s")
    print(f"{'variant':24} {'kernel':24}" + "".join(f"{c:>7}" for c in columns))
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:24} {r['kernel']:24} ERROR {r['error'][:200]}")
            continue
        c = r["constexprs"]
        values = (c.get("BM", "-"), c.get("WC", "-"), r["options"].get("num_warps"), r["shared"],
                  r["wgmma"], r.get("registers"), r.get("spill_stores"), r["seconds"])  # fmt: skip
        print(f"{r['variant']:24} {r['kernel']:24}" + "".join(f"{v:>7}" for v in values))


if __name__ == "__main__":
    main(sys.argv[1:])
