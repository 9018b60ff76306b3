"""Tasks: how data becomes inputs, targets, a loss and metrics, one room per task.

``regression`` (image fitting, PROTOCOL 2), ``restoration`` (denoising and deblurring,
PROTOCOL 3) and ``functions`` (function approximation, PROTOCOL 6) each hold their data, their
objective and the papers' defaults. ``TASKS`` maps the image tasks of ``mgdl-fast fit`` to their
``TaskSpec``: everything the run service (``mgdl_fast.run``) needs to know of a task, so that
adding one touches this room only (CONTRIBUTING.md, "Adding a task").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from ..errors import InputError
from . import lattice, regression, restoration
from .base import GradeInputs, MemoryTerms, Objective, Split, Task
from .functions import FunctionTask
from .regression import RegressionObjective, RegressionTask, psnr_from_loss
from .restoration import InverseTask, TVObjective

PRESETS = ("quick", "paper", "colour")


@dataclass(frozen=True)
class TaskSpec:
    """An image task, as the run service uses it:

    - ``make(image, task_cfg, train_cfg, device) -> (task, objective)``; ``make_streamed(lazy
      image, device)`` the same reading the image band by band (None: no streamed form);
    - ``defaults(model kind) -> dict`` (grades, width, layers, lr, cadence, early stop, cache
      dtype), ``epochs`` per preset and what a preset sets on top (``presets``);
    - ``options``: the run description's task options it takes (field of ``run.config``'s
      task section -> key of ``config['task']``), all of which a resume may not change;
      ``configure(model kind, **options) -> config['task']`` fills in its defaults;
    - ``memory``: what its data and objective hold (``train.memory``).
    """

    name: str
    make: Callable
    defaults: Callable[[str], dict]
    epochs: dict[str, int]
    configure: Callable[..., dict]
    memory: MemoryTerms
    presets: dict[str, dict] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    make_streamed: Callable | None = None


def _regression_defaults(model: str) -> dict:
    return dict(regression.DEFAULTS)


def _regression_streamed(image, device):
    task = lattice.StreamedRegressionTask(image, device=device)
    return task, RegressionObjective(task)


TASKS = {
    "regression": TaskSpec(
        "regression",
        regression.make,
        _regression_defaults,
        regression.EPOCHS,
        configure=lambda model: {"name": "regression"},
        memory=MemoryTerms(lattice.split_rows, objective_per_row=1),
        presets=regression.PRESET_DEFAULTS,
        make_streamed=_regression_streamed,
    ),
    **{
        name: TaskSpec(
            name,
            restoration.make,
            partial(restoration.defaults, name),
            restoration.EPOCHS,
            configure=partial(restoration.task_config, name),
            memory=MemoryTerms(
                lambda h, w: {"train": h * w}, objective_per_pixel=restoration.TV_ARRAYS
            ),
            options=restoration.OPTIONS,
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
    "MemoryTerms",
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
