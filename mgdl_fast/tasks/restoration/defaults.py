"""The denoising and deblurring protocol's defaults (PROTOCOL 3): the authors' selected
hyper-parameters, the observations, and what a restoration run changes in the fit defaults."""

from __future__ import annotations

import math

from ...errors import InputError
from .operators import kernel_size

RESTORE_TASKS = ("denoise", "deblur")
# The run description's options of these tasks -> their key in config['task'] (all fixed for a
# resumed run: they define the observation and the loss).
OPTIONS = {"noise": "noise_255", "blur": "blur", "beta": "beta", "lam": "lambda",
           "noise_seed": "noise_seed"}  # fmt: skip
# Image-space arrays of one TV step per pixel and channel, fp32: the accumulated image, u
# (two), the prediction, its differences (two) and prox output (two), the blur, the loss
# graph's saved tensors and the gradient (counted in objective.py's step).
TV_ARRAYS = 16

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
# The largest blur sigma accepted, checked before its kernel is made: the protocol uses 3-7.
MAX_BLUR = 100.0
# A restoration run: 3 hidden layers per grade (SGDL: 12), PSNR logged every 100 iterations,
# no early stopping, fp32 features (as the authors' JAX); test_every None: at every record
# (the objective records one PSNR, against the clean image, for its only split).
DEFAULTS = {
    "grades": 4,
    "width": 128,
    "layers": 3,
    "record_every": 100,
    "test_every": None,
    "early_stopping": False,
    "cache_dtype": "fp32",
}
# Iterations per grade: the papers' 20,000, or a CPU-scale count (docs/REPRODUCTION.md).
EPOCHS = {"quick": 1000, "paper": 20_000}


def defaults(task: str, model: str) -> dict:
    """The fit defaults of ``task`` ('denoise' or 'deblur') for ``model`` ('mgdl' or 'sgdl')."""
    return {**DEFAULTS, "lr": SELECTED[(task, model)][0]}


def task_config(
    task: str,
    model: str,
    *,
    noise: float | None = None,
    blur: float | None = None,
    beta: float | None = None,
    lam: float | None = None,
    noise_seed: int = 0,
) -> dict:
    """``config['task']`` of a restoration run with the authors' defaults filled in; refuses
    out-of-range values with one line before any work."""
    if task == "denoise" and blur is not None:
        raise InputError("--blur applies to --task deblur; denoising has no blur")
    _, beta0, lam0 = SELECTED[(task, model)]
    noise0, blur0 = OBSERVATION[task]
    config = {
        "name": task,
        "noise_255": noise0 if noise is None else noise,
        "blur": (blur0 if blur is None else blur) if task == "deblur" else None,
        "beta": beta0 if beta is None else beta,
        "lambda": lam0 if lam is None else lam,
        "alpha": 0.99,
        "noise_seed": noise_seed,
    }
    _check(config)
    return config


def _check(config: dict) -> None:
    noise, beta, lam = config["noise_255"], config["beta"], config["lambda"]
    if not (math.isfinite(noise) and noise >= 0):
        raise InputError(f"--noise must be a finite number >= 0 (in /255 units), got {noise!r}")
    if config["name"] == "denoise" and noise == 0:
        raise InputError("--noise must be > 0 for denoising")
    if not (math.isfinite(beta) and beta > 0):
        raise InputError(f"beta out of range: {beta!r} (need beta > 0)")
    if not (math.isfinite(lam) and lam >= 0):
        raise InputError(f"lambda out of range: {lam!r} (need lambda >= 0)")
    seed = config["noise_seed"]
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63):
        raise InputError(f"--noise-seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    if config["blur"] is not None:
        kernel_size(config["blur"])
        if config["blur"] > MAX_BLUR:
            raise InputError(
                f"--blur must be at most {MAX_BLUR:g} pixels (a {kernel_size(MAX_BLUR)}-pixel "
                f"kernel), got {config['blur']:g}"
            )
