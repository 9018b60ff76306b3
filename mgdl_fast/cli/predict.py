"""``mgdl-fast predict CKPT``: render a checkpoint at any resolution, band by band (``.tif``,
``.zarr`` and ``.npy`` outputs are written as they are rendered, in bounded memory)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..io.checkpoint import load_checkpoint
from ..io.render import FORMATS, check_output, render_to
from ..train.config import resolve_device
from ..train.progress import Progress


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
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--backend", default=None, help="torch (or reference), triton, cuda or auto")
    p.add_argument("--chunk-size", type=int, default=1 << 16, help="pixels per forward chunk")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.size and (args.size[0] < 1 or args.size[1] < 1):
        raise InputError(f"--size must be positive, got {args.size[0]} x {args.size[1]}")
    ckpt = Path(args.checkpoint)
    folder = ckpt if ckpt.is_dir() else ckpt.parent
    if args.out is not None:
        check_output(Path(args.out))
    device = resolve_device(args.device)
    model, config = load_checkpoint(args.checkpoint, device=device)
    if args.size:
        height, width = args.size
    else:
        image = config.get("image", {})
        height, width = image.get("height"), image.get("width")
        if not (height and width):
            raise InputError("the checkpoint records no image size; pass --size H W")
    if model.in_dim != 2:
        raise InputError("predict renders image models (2-d coordinate inputs) only")
    out = Path(args.out) if args.out else folder / f"render_{height}x{width}.png"
    paths = [out]
    if args.npy and out.suffix.lower() != ".npy":
        paths.append(out.with_suffix(".npy"))
    progress = Progress(quiet=args.quiet)
    render_to(
        model, height, width, paths, chunk_size=args.chunk_size, progress=progress,
        backend=args.backend,
    )  # fmt: skip
    print(f"wrote {', '.join(map(str, paths))} ({height}x{width}, {len(model)} grades)")
    return 0
