"""The fit command's denoising and deblurring tasks (PROTOCOL 3): options, the authors'
selected hyper-parameters as defaults, and the task/objective factory."""

from __future__ import annotations

import math

from ..errors import InputError
from ..operators import kernel_size
from ..tasks.inverse import InverseTask
from ..tv_objective import TVObjective

RESTORE_TASKS = ("denoise", "deblur")
STATE_FILE = "objective_state.npz"

# (lr, beta, lambda) the authors selected on butterfly (PROTOCOL 3.5): denoise at noise 10/255,
# deblur at blur sigma 3 with noise 3/255. Every other image and level uses them too.
SELECTED = {
    ("denoise", "mgdl"): (5e-3, 1.0, 1e-2),
    ("denoise", "sgdl"): (5e-3, 1e-1, 1e-4),
    ("deblur", "mgdl"): (5e-3, 1e-2, 1e-1),
    ("deblur", "sgdl"): (5e-3, 1e-1, 1e-1),
}
# Observation defaults: noise in /255 units, blur sigma in pixels (PROTOCOL 1.2, 1.3).
OBSERVATION = {"denoise": (10.0, None), "deblur": (3.0, 3.0)}
# What a restoration run changes in the fit defaults: 3 hidden layers per grade (SGDL: 12),
# PSNR logged every 100 iterations, no early stopping, fp32 features (as the authors' JAX).
FIT_DEFAULTS = {"layers": 3, "record_every": 100, "early_stopping": False, "cache_dtype": "fp32"}


def add_options(p) -> None:
    """The restoration options of ``mgdl-fast fit`` (refused for other tasks)."""
    g = p.add_argument_group("denoise / deblur (PROTOCOL 3)")
    g.add_argument("--noise", type=float, help="noise std in /255 units (10 denoise, 3 deblur)")
    g.add_argument("--blur", type=float, help="Gaussian blur sigma in pixels (deblur; default 3)")
    g.add_argument("--beta", type=float, help="TV coupling beta (default: the authors' choice)")
    g.add_argument(
        "--lambda", dest="lam", type=float, help="TV weight lambda (default: the authors' choice)"
    )
    g.add_argument("--noise-seed", type=int, default=0, help="seed of the observation's noise")
    g.add_argument(
        "--crop",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="train on the centre H x W crop of the image (any task)",
    )


def task_config(args) -> dict:
    """``config['task']`` from the command line, with the authors' defaults filled in."""
    restore = args.task in RESTORE_TASKS
    given = [
        f"--{name}"
        for name, value in (("noise", args.noise), ("blur", args.blur), ("beta", args.beta))
        if value is not None
    ] + (["--lambda"] if args.lam is not None else [])
    if not restore:
        if given:
            raise InputError(f"{', '.join(given)} apply to --task denoise or deblur only")
        return {"name": args.task}
    if args.task == "denoise" and args.blur is not None:
        raise InputError("--blur applies to --task deblur; denoising has no blur")
    lr, beta, lam = SELECTED[(args.task, args.model)]
    noise, blur = OBSERVATION[args.task]
    config = {
        "name": args.task,
        "noise_255": noise if args.noise is None else args.noise,
        "blur": (blur if args.blur is None else args.blur) if args.task == "deblur" else None,
        "beta": beta if args.beta is None else args.beta,
        "lambda": lam if args.lam is None else args.lam,
        "alpha": 0.99,
        "noise_seed": args.noise_seed,
        "default_lr": lr,
    }
    _check(config)
    return config


def _check(config: dict) -> None:
    """Refuse out-of-range values before any work (one-line errors)."""
    noise, beta, lam = config["noise_255"], config["beta"], config["lambda"]
    if not (math.isfinite(noise) and noise >= 0):
        raise InputError(f"--noise must be a finite number >= 0 (in /255 units), got {noise!r}")
    if config["name"] == "denoise" and noise == 0:
        raise InputError("--noise must be > 0 for denoising")
    if not (math.isfinite(beta) and beta > 0):
        raise InputError(f"beta out of range: {beta!r} (need beta > 0)")
    if not (math.isfinite(lam) and lam >= 0):
        raise InputError(f"lambda out of range: {lam!r} (need lambda >= 0)")
    if config["blur"] is not None:
        kernel_size(config["blur"])


def make_restore(image, task_cfg, train_cfg, device):
    """The InverseTask and TVObjective a restoration config describes."""
    task = InverseTask(
        image.pixels,
        noise=task_cfg["noise_255"] / 255.0,
        blur_sigma=task_cfg["blur"],
        seed=task_cfg["noise_seed"],
        device=device,
    )
    objective = TVObjective(
        task,
        beta=task_cfg["beta"],
        lam=task_cfg["lambda"],
        alpha=task_cfg["alpha"],
        backend=train_cfg.backend,
        chunk_size=train_cfg.chunk_size,
    )
    return task, objective


def centre_crop(image, size):
    """``image`` cropped to its centre ``size = (H, W)``; refuses a crop larger than it."""
    height, width = size
    if not (2 <= height <= image.height and 2 <= width <= image.width):
        raise InputError(
            f"--crop {height} {width} must lie within the {image.height}x{image.width} image "
            "and be at least 2x2"
        )
    top, left = (image.height - height) // 2, (image.width - width) // 2
    image.pixels = image.pixels[top : top + height, left : left + width].copy()
    image.notes.append(f"cropped to the centre {height}x{width} (rows {top}.., cols {left}..)")
    return image
