"""Small images and configurations shared by the trainer and CLI tests."""

from __future__ import annotations

import numpy as np
from skimage import data, transform

from mgdl_fast import ModelConfig, TrainConfig, from_array
from mgdl_fast.cli import main


def tiny_pattern() -> np.ndarray:
    """A 16x16 uint8 grayscale image with a smooth pattern: the CLI tests' tiny input."""
    yy, xx = np.mgrid[0:16, 0:16]
    return (127 + 100 * np.sin(xx / 3.0) * np.cos(yy / 4.0)).astype(np.uint8)


def small_camera(size: int = 32):
    """skimage's cameraman resized to ``size`` x ``size`` (an Image in [0, 1])."""
    pixels = transform.resize(data.camera() / 255.0, (size, size), anti_aliasing=True)
    return from_array(np.clip(pixels, 0.0, 1.0), source=f"camera{size}")


def tiny_model(kind: str = "mgdl", grades: int = 3) -> ModelConfig:
    return ModelConfig(kind=kind, grades=grades, width=32, layers=2)


def quick_train(**overrides) -> TrainConfig:
    settings = {"epochs": 150, "lr": 1e-2, "record_every": 10, "test_every": 50, "device": "cpu"}
    settings.update(overrides)
    return TrainConfig(**settings)


def resolved(*argv: str) -> dict:
    """The resolved configuration ``mgdl-fast fit ARGV`` would train with (nothing run)."""
    from mgdl_fast.cli import build_parser
    from mgdl_fast.cli.fit import description
    from mgdl_fast.run.resolve import device_of, resolve

    run, _ = description(build_parser().parse_args(["fit", *argv]))
    return resolve(run, device_of(run))


def run_cli(args, capsys):
    """Run ``mgdl-fast ARGS``; returns ``(exit code, stdout, stderr)``."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
