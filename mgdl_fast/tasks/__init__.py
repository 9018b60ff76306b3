"""Tasks: how data becomes inputs, targets, a loss and metrics, one room per task.

``regression`` (image fitting, PROTOCOL 2), ``restoration`` (denoising and deblurring,
PROTOCOL 3) and ``functions`` (function approximation, PROTOCOL 6) each hold their data, their
objective and the papers' defaults. ``TASKS`` maps the image tasks of ``mgdl-fast fit`` to
their spec; ``fit_defaults`` gives a task's defaults without the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from ..errors import InputError
from . import regression, restoration
from .base import GradeInputs, Objective, Split, Task
from .functions import FunctionTask
from .regression import RegressionObjective, RegressionTask, psnr_from_loss
from .restoration import InverseTask, TVObjective

PRESETS = ("quick", "paper", "colour")


@dataclass(frozen=True)
class TaskSpec:
    """An image task: its factory ``make(image, task_cfg, train_cfg, device) -> (task,
    objective)``, its fit defaults per model kind, epochs per grade per preset, and what a
    preset sets on top of the defaults."""

    name: str
    make: Callable
    defaults: Callable[[str], dict]
    epochs: dict[str, int]
    presets: dict[str, dict] = field(default_factory=dict)


def _regression_defaults(model: str) -> dict:
    return dict(regression.DEFAULTS)


TASKS = {
    "regression": TaskSpec(
        "regression",
        regression.make,
        _regression_defaults,
        regression.EPOCHS,
        regression.PRESET_DEFAULTS,
    ),
    **{
        name: TaskSpec(
            name, restoration.make, partial(restoration.defaults, name), restoration.EPOCHS
        )
        for name in restoration.RESTORE_TASKS
    },
}


def fit_defaults(task: str, model: str, preset: str) -> dict:
    """Defaults of an image task for ``model`` under ``preset``: grades, width, layers, lr,
    epochs, record and test cadence, early stopping, the feature-cache dtype and (quick
    regression) grade 1's encoding and the training time budget."""
    spec = TASKS[task]
    if preset not in spec.epochs:
        raise InputError(f"--preset {preset} applies to --task regression (colour images) only")
    return {**spec.defaults(model), "epochs": spec.epochs[preset], **spec.presets.get(preset, {})}


__all__ = [
    "PRESETS",
    "TASKS",
    "FunctionTask",
    "GradeInputs",
    "InverseTask",
    "Objective",
    "RegressionObjective",
    "RegressionTask",
    "Split",
    "TVObjective",
    "Task",
    "TaskSpec",
    "fit_defaults",
    "psnr_from_loss",
]
