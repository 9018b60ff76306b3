"""``mgdl-fast predict CKPT``: render a checkpoint at any resolution, band by band (``.tif``,
``.zarr`` and ``.npy`` outputs are written as they are rendered, in bounded memory)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..io.checkpoint import load_checkpoint
from ..io.lazy import MAX_SIDE
from ..io.render import render_to
from ..io.sinks import FORMATS, check_output
from ..train.config import resolve_device
from ..train.progress import Progress

# Bounds checked before anything is allocated: a side of MAX_SIDE pixels (2^20, as for an image
# read: a 1-tera-pixel grid), and a chunk of 2^26 rows.
MAX_CHUNK = 1 << 26


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="render a checkpoint on an H x W coordinate grid")
    p.add_argument("checkpoint", help="model.safetensors / model.json, or the run directory")
    p.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="output size (default: the training image's size)",
    )
    p.add_argument(
        "--out",
        help=f"output file, {', '.join(FORMATS)} (default: render_HxW.png beside the checkpoint)",
    )
    p.add_argument("--npy", action="store_true", help="also save the float32 [H, W, C] array")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file (or a .zarr store predict wrote); default: refuse",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--backend", default=None, help="torch (or reference), triton, cuda or auto")
    p.add_argument("--chunk-size", type=int, default=1 << 16, help="pixels per forward chunk")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(run=run)


def run(args) -> int:
    if not 1 <= args.chunk_size <= MAX_CHUNK:
        raise InputError(f"--chunk-size must be 1..{MAX_CHUNK}, got {args.chunk_size}")
    if args.size and not all(1 <= n <= MAX_SIDE for n in args.size):
        raise InputError(
            f"--size must be 1..{MAX_SIDE} pixels a side, got {args.size[0]} x {args.size[1]}"
        )
    ckpt = Path(args.checkpoint)
    folder = ckpt if ckpt.is_dir() else ckpt.parent
    if args.out is not None:
        if not args.out:
            raise InputError("--out is empty; name the output file")
        check_output(Path(args.out), args.overwrite)
    device = resolve_device(args.device or "auto")
    model, config = load_checkpoint(args.checkpoint, device=device)
    if args.size:
        height, width = args.size
    else:
        image = config.get("image", {})
        height, width = image.get("height"), image.get("width")
        sides = (height, width)
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_SIDE
                   for n in sides):  # fmt: skip
            raise InputError("the checkpoint records no usable image size; pass --size H W")
    if model.in_dim != 2:
        raise InputError("predict renders image models (2-d coordinate inputs) only")
    out = Path(args.out) if args.out else folder / f"render_{height}x{width}.png"
    paths = [out]
    if args.npy and out.suffix.lower() != ".npy":
        paths.append(out.with_suffix(".npy"))
    progress = Progress(quiet=args.quiet)
    render_to(
        model, height, width, paths, chunk_size=args.chunk_size, progress=progress,
        backend=args.backend, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote {', '.join(map(str, paths))} ({height}x{width}, {len(model)} grades)")
    return 0
