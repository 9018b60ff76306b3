"""mgdl_fast: a custom-kernel engine for multi-grade deep learning (MGDL).

Importing never compiles or probes a GPU; Triton and the CUDA extension load on first use, and
``mgdl_fast.jax`` imports JAX only when imported. Importing registers the ``torch.ops.mgdl_fast``
custom ops. The public surface is ``__all__`` (docs/API.md says what is stable).
"""

from . import nn, ops
from ._version import __version__
from .backends import bind
from .backends.base import DTYPE_POLICY, Options
from .backends.engine import Engine
from .block import BlockParams, BlockShape
from .errors import BackendUnavailableError, DivergenceError, InputError, MGDLError
from .experiments.construct import construct
from .io.checkpoint import load_checkpoint, save_checkpoint
from .io.images import Image, default_image, from_array, load_image
from .nn import Grade, MultiGrade
from .ops import adam_step, block_backward, block_forward, gd_step, grade_step
from .tasks import FunctionTask, RegressionObjective, RegressionTask
from .tasks.base import GradeInputs, Objective, Split, Task
from .train import FitResult, GradeHook, ModelConfig, MultiGradeModel, TrainConfig, fit

__all__ = [
    "DTYPE_POLICY",
    "BackendUnavailableError",
    "BlockParams",
    "BlockShape",
    "DivergenceError",
    "Engine",
    "FitResult",
    "FunctionTask",
    "Grade",
    "GradeHook",
    "GradeInputs",
    "Image",
    "InputError",
    "MGDLError",
    "ModelConfig",
    "MultiGrade",
    "MultiGradeModel",
    "Objective",
    "Options",
    "RegressionObjective",
    "RegressionTask",
    "Split",
    "Task",
    "TrainConfig",
    "__version__",
    "adam_step",
    "bind",
    "construct",
    "block_backward",
    "block_forward",
    "default_image",
    "fit",
    "fit_regression",
    "from_array",
    "gd_step",
    "grade_step",
    "load_checkpoint",
    "load_image",
    "nn",
    "ops",
    "save_checkpoint",
]


def fit_regression(
    image: Image, model: ModelConfig | None = None, train: TrainConfig | None = None, **kwargs
) -> FitResult:
    """Fit an image by coordinate regression (PROTOCOL 2); keyword arguments go to ``fit``."""
    model = model or ModelConfig()
    train = train or TrainConfig()
    task = RegressionTask(image.pixels, device=train.torch_device())
    return fit(task, RegressionObjective(task), model, train, **kwargs)
