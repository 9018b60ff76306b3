"""Launch configurations of the Triton kernels: tile sizes, warps, program counts.

Plain Python (no Triton import), so host code and tests can read it without compiling anything.
The GPU values are first choices made from the ahead-of-time compile report (registers, spills
and shared memory per variant, see bench/aot_report.py); none has been timed on a GPU yet.
"""

from __future__ import annotations

from dataclasses import dataclass

# The matrix precisions a kernel accepts as its DOT constexpr. "bf16emu" rounds the operands to
# bf16 like "bf16" but multiplies them in fp32 (exact: a product of two bf16 values fits in fp32):
# the Triton interpreter computes bf16 tl.dot wrongly, so interpreted runs use it instead.
DOTS = ("bf16", "bf16emu", "tf32", "ieee")
PRECISIONS = ("bf16", "tf32", "ieee")

# Elementwise kernels (optimizer updates, partial-sum reduction) over the flat [P] vector.
OPTIM_BLOCK = 1024
REDUCE_BLOCK = 256
REDUCE_ROWS = 8
# Interpreted programs run one after another, so few programs keep tests fast while still
# giving some programs several tiles (the accumulate path) and others one.
INTERPRETER_PROGRAMS = 3
INTERPRETER_BLOCK_M = 16


@dataclass(frozen=True)
class TileConfig:
    """Rows per tile (``block_m``), warps per program, software-pipelining depth and the
    column-chunk width of activations and weight blocks (``chunk``, a power of two)."""

    block_m: int
    num_warps: int
    num_stages: int = 1
    chunk: int = 128


def padded(n: int) -> int:
    """The next power of two >= n (Triton block shapes are powers of two)."""
    return 1 << max(0, n - 1).bit_length()


def dot_mode(precision: str, interpreting: bool) -> str:
    """The kernels' DOT constexpr for a precision name (see DOTS)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return "bf16emu" if precision == "bf16" and interpreting else precision


def chunk_width(width: int) -> int:
    """One chunk up to 128 columns; wider blocks in 128- or 64-column chunks, so no operand
    exceeds a 128 x 128 block in shared memory (a 256 x 256 fp32 weight alone would not fit)."""
    if width <= 128:
        return padded(width)
    return 128 if width % 128 == 0 else 64


def tile_config(
    width: int, dot: str, interpreting: bool, *, training: bool, override: str | None = None
) -> TileConfig:
    """Tile shape for the block kernels at width ``width``.

    64 rows keep every [rows, chunk] @ [chunk, chunk] product at wgmma's M = 64 for one
    warpgroup. The training kernels hold L + 1 activations and a gradient per tile; 8 warps
    (more registers in all) and 64-column chunks spilled least in the sm_90 compile report at
    W = 128 (bench/aot_report.py); none of this has been timed on a GPU yet. ``override``
    ("BLOCK_M,NUM_WARPS,CHUNK", e.g. from an environment variable) replaces the choice, for
    tuning on a GPU.
    """
    chunk = chunk_width(width)
    if interpreting:
        config = TileConfig(INTERPRETER_BLOCK_M, 4, 1, chunk)
    elif not training:
        fp32 = dot in ("tf32", "ieee")
        config = TileConfig(64 if fp32 else 128, 8, 1, chunk)
    else:
        # 64-column chunks halve the live weight-gradient block; at W = 128 that cut the
        # sm_90 spills of the bf16 step from 236 to 80 bytes per thread (L = 2).
        config = TileConfig(64, 8 if width > 64 else 4, 1, min(chunk, 64))
    if override:
        block_m, num_warps, chunk = (int(v) for v in override.split(","))
        config = TileConfig(block_m, num_warps, 1, chunk)
    return config


def num_programs(num_tiles: int, sm_count: int | None) -> int:
    """Persistent programs for the training kernels: one per SM (each keeps its own partial
    gradient row, so fewer programs also mean a cheaper reduction), never more than tiles."""
    limit = INTERPRETER_PROGRAMS if sm_count is None else sm_count
    return max(1, min(num_tiles, limit))
