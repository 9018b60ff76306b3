"""Launch configurations of the Triton kernels: tile shapes, warps, what stays on chip, program
counts. Plain Python (no Triton import), so host code and tests read it without compiling.

The block kernels hold activations transposed, ``[features, rows]``: every product has a
feature chunk as its M dimension (weights as the A operand) and the tile's rows as N, so a
chunk of 128 features with 8 warps (or 64 with 4) is exactly what the MMA layout covers, and
per-feature vectors (biases, their gradients) cost 2 registers per thread. Choices below are
checked by the sm_90 compile report (bench/kernel_report.py); none has been timed on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# The matrix precisions a kernel accepts as its DOT constexpr. "bf16emu" rounds the operands to
# bf16 like "bf16" but multiplies them in fp32 (exact: a product of two bf16 values fits in fp32):
# the Triton interpreter computes bf16 tl.dot wrongly, so interpreted runs use it instead. "tf32"
# rounds operands to tf32 (to nearest, ties away, as cvt.rna.tf32.f32) before tf32 products.
DOTS = ("bf16", "bf16emu", "tf32", "ieee")
PRECISIONS = ("bf16", "tf32", "ieee")

OPTIM_BLOCK = 1024
# Rows per tile of kernels/weight_grad.py (a plain GEMM: h^T g over the rows).
WEIGHT_GRAD_BLOCK = 64
REDUCE_BLOCK = 512
REDUCE_ROWS = 8
# Partial-gradient rows are padded to a multiple of this many fp32 (128 bytes), so every row
# starts 16-byte aligned and the reduction reads them with vector loads.
PARTIAL_ALIGN = 32
# Interpreted programs run one after another: few of them keep CPU tests fast while some
# programs still take several tiles (tests pass a 132-SM target to run the GPU's grid).
INTERPRETER_PROGRAMS = 3
# What a program keeps on chip across its tiles (H100: 227 KB shared memory per block, 64K
# registers per SM): resident weights up to this many bytes (the rest holds the pipelined input
# tiles and the products' staged operands), weight gradients up to this many registers/thread.
RESIDENT_WEIGHT_BYTES = 132 * 1024
KEPT_GRADIENT_REGISTERS = 128
# Registers per thread (of 255) a training tile may plan for: the rest holds pointers, loop
# state and what ptxas needs to schedule the products; calibrated on the compile report.
LIVE_REGISTER_BUDGET = 208


@dataclass(frozen=True)
class TileConfig:
    """``block_m`` rows per tile, ``num_warps``, ``num_stages`` (2: the next tile's inputs load
    while this one computes), ``chunk`` features per chunk (a power of two), ``resident``
    (W x W weights loaded once per program into shared memory, else streamed per tile) and
    ``keep`` (how many W x W layers, counted from the last, accumulate their weight gradient in
    registers over all tiles; the others leave their tiles' operands for
    kernels/weight_grad.py)."""

    block_m: int
    num_warps: int
    num_stages: int = 2
    chunk: int = 128
    resident: bool = True
    keep: int = 0


def padded(n: int) -> int:
    """The next power of two >= n (Triton block shapes are powers of two)."""
    return 1 << max(0, n - 1).bit_length()


def dot_mode(precision: str, interpreting: bool) -> str:
    """The kernels' DOT constexpr for a precision name (see DOTS)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return "bf16emu" if precision == "bf16" and interpreting else precision


def chunk_width(width: int) -> int:
    """One chunk up to 128 features; wider blocks in 128- or 64-feature chunks (a 256 x 256
    weight is four 128 x 128 blocks)."""
    if width <= 128:
        return max(16, padded(width))
    return 128 if width % 128 == 0 else 64


def square_layers(in_dim: int, width: int, hidden_layers: int) -> int:
    """W x W products per pass: every hidden layer but a 1-3 wide input layer (CUDA cores)."""
    return hidden_layers if in_dim == width else hidden_layers - 1


def tile_config(
    in_dim: int, width: int, hidden_layers: int, dot: str, *, training: bool,
    override: str | None = None,
) -> TileConfig:  # fmt: skip
    """Tile shape of the block kernels for a block and product precision.

    Weights are resident when every W x W layer fits RESIDENT_WEIGHT_BYTES (tf32 needs each
    twice, as wgmma reads fp32 operands only K-major). Training keeps as many weight gradients
    in registers as KEPT_GRADIENT_REGISTERS allows (a 128 x 128 fp32 one is 64 registers per
    thread with 8 warps) and takes the most rows per tile that fit LIVE_REGISTER_BUDGET: 32
    for two kept gradients at W = 128, 16 with a third hidden layer or tf32 operands.
    ``override`` ("BLOCK_M,NUM_WARPS,CHUNK[,KEEP[,STAGES]]", e.g. from an environment
    variable) replaces the choice, for tuning on a GPU.
    """
    chunk = chunk_width(width)
    chunks = -(-width // chunk)
    warps = 8 if chunk == 128 else 4
    squares = square_layers(in_dim, width, hidden_layers)
    copies = 2 if dot == "tf32" else 1
    item = 2 if dot.startswith("bf16") else 4
    resident = squares * copies * (chunks * chunk) ** 2 * item <= RESIDENT_WEIGHT_BYTES
    per_layer = chunks * chunks * chunk * chunk // (32 * warps)
    keep = min(squares, KEPT_GRADIENT_REGISTERS // per_layer) if training else 0
    if dot == "ieee":
        # fp32 products are CUDA-core FMAs fully unrolled per tile: small tiles keep the sm_90
        # compile under 20 s (a correctness path, not a fast one).
        block_m = 16 if training else 32
    elif not training:
        block_m = 128 if in_dim == width and chunks == 1 else 64
    elif chunk < 64:
        block_m = 64
    else:
        # Registers per thread of one [chunk, block_m] fp32 tile; a tile keeps about L + 3
        # of them live besides the kept gradients (fp32 operands of tf32 products: twice).
        def live(rows: int) -> int:
            tile = chunks * chunk * rows // (32 * warps) * (2 if dot == "tf32" else 1)
            return keep * per_layer + (hidden_layers + 3) * tile

        fits = [m for m in (64, 32) if live(m) <= LIVE_REGISTER_BUDGET and resident]
        # Streamed weights: their per-tile loads and vectors need the room of a 16-row tile.
        block_m = fits[0] if fits else 16
    # Streamed weights stay out of the software pipeline: it would buffer every weight block.
    config = TileConfig(block_m, warps, 2 if resident else 1, chunk, resident, keep)
    if override:
        values = [int(v) for v in override.split(",")]
        config = replace(config, block_m=values[0], num_warps=values[1], chunk=values[2])
        if len(values) > 3:
            config = replace(config, keep=values[3])
        if len(values) > 4:
            config = replace(config, num_stages=values[4])
    return config


def scratch_layers(in_dim: int, width: int, hidden_layers: int, keep: int) -> range:
    """The W x W layers whose weight gradients kernels/weight_grad.py sums (not kept)."""
    return range(0 if in_dim == width else 1, hidden_layers - keep)


def num_programs(num_tiles: int, sm_count: int | None) -> int:
    """Persistent programs: one per SM (each keeps its weights and its own partial gradient,
    so fewer programs also mean a cheaper reduction), never more than tiles."""
    limit = INTERPRETER_PROGRAMS if sm_count is None else sm_count
    return max(1, min(num_tiles, limit))


def partial_stride(num_params: int) -> int:
    """Row stride of the partial-gradient rows: P gradients and the loss, padded."""
    return -(-(num_params + 1) // PARTIAL_ALIGN) * PARTIAL_ALIGN
