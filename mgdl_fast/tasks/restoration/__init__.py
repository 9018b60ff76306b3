"""Image restoration (PROTOCOL 3): denoising and deblurring by TV-regularised MGDL.

``observation.py`` degrades the image, ``operators.py`` holds the blur and TV operators,
``objective.py`` the loss with its proximal variable, ``defaults.py`` the authors' settings.
"""

from __future__ import annotations

import torch

from .defaults import DEFAULTS, EPOCHS, OPTIONS, RESTORE_TASKS, TV_ARRAYS, defaults, task_config
from .objective import TVObjective
from .observation import InverseTask

__all__ = [
    "DEFAULTS",
    "EPOCHS",
    "OPTIONS",
    "RESTORE_TASKS",
    "TV_ARRAYS",
    "InverseTask",
    "TVObjective",
    "defaults",
    "make",
    "task_config",
]


def make(image, task_cfg: dict, train_cfg, device: torch.device):
    """The InverseTask and TVObjective a restoration ``task_cfg`` describes."""
    task = InverseTask(
        image.pixels,
        noise=task_cfg["noise_255"] / 255.0,
        blur_sigma=task_cfg["blur"],
        seed=task_cfg["noise_seed"],
        device=device,
    )
    objective = TVObjective(
        task, beta=task_cfg["beta"], lam=task_cfg["lambda"], alpha=task_cfg["alpha"]
    )
    return task, objective
