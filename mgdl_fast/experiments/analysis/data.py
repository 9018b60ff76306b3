"""The analysis commands' data: PROTOCOL 6's 1D functions or an image (PROTOCOL 1.1 split),
optionally subsampled and inverted as the eigenvalue code does (PROTOCOL 4)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ...io.images import load_image
from ...tasks import FunctionTask, RegressionTask
from ...tasks.regression import RegressionObjective

SYNTHETIC_PREFIX = "synthetic:"


@dataclass
class Data:
    """A task, its objective, whether it is ``synthetic`` or an ``image``, and a short name."""

    task: RegressionTask | FunctionTask
    objective: RegressionObjective
    kind: str
    name: str


def parse_synthetic(spec: str) -> int | None:
    """The setting number of ``synthetic:1`` / ``synthetic:2``; None when ``spec`` is a path."""
    if not spec.startswith(SYNTHETIC_PREFIX):
        return None
    setting = spec[len(SYNTHETIC_PREFIX) :]
    if setting not in ("1", "2"):
        raise InputError(f"unknown synthetic setting {setting!r} in {spec!r}; use synthetic:1 or 2")
    return int(setting)


def load_data(
    spec: str, *, downsample: int = 1, invert: bool = False, device: torch.device | str = "cpu"
) -> Data:
    """``synthetic:1|2`` (PROTOCOL 6, 1024 training points) or an image file.

    Images are read in [0, 1], subsampled as ``img[::s, ::s]`` (PROTOCOL 4 uses s = 2) and, with
    ``invert``, replaced by ``1 - img`` (the code's ``np.invert(uint8) / 255`` for the
    resolution chart), then split into even (train) / odd (val) pixels and the full test image.
    """
    if not isinstance(downsample, int) or downsample < 1:
        raise InputError(f"downsample must be an integer >= 1, got {downsample!r}")
    setting = parse_synthetic(spec)
    if setting is not None:
        if downsample != 1 or invert:
            raise InputError("--downsample and --invert apply to images, not synthetic data")
        task = FunctionTask.setting(setting, device=device)
        return Data(task, RegressionObjective(task), "synthetic", f"synthetic{setting}")
    image = load_image(spec)
    pixels = image.pixels[::downsample, ::downsample]
    if min(pixels.shape[:2]) < 4:
        raise InputError(
            f"{spec}: {image.height}x{image.width} subsampled by {downsample} is "
            f"{pixels.shape[0]}x{pixels.shape[1]}; need at least 4x4 pixels"
        )
    if invert:
        pixels = 1.0 - pixels
    image_task = RegressionTask(np.ascontiguousarray(pixels), device=device)
    return Data(image_task, RegressionObjective(image_task), "image", Path(spec).stem)
