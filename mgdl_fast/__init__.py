"""mgdl_fast: a custom-kernel engine for multi-grade deep learning (MGDL).

Importing never compiles or probes a GPU; Triton and the CUDA extension load on first use, and
``mgdl_fast.jax`` imports JAX only when imported. Importing registers the ``torch.ops.mgdl_fast``
custom ops. The public surface is ``__all__`` (docs/API.md says what is stable).
"""

from ._startup import interrupt_ends_command

with interrupt_ends_command():
    import numpy as np

    from . import nn, ops
    from ._version import __version__
    from .backends import bind
    from .backends.base import DTYPE_POLICY, Options
    from .backends.engine import Engine
    from .block import BlockParams, BlockShape
    from .errors import BackendUnavailableError, DivergenceError, InputError, MGDLError
    from .experiments.construct import construct
    from .grid import coordinate_grid, grid_rows
    from .io.checkpoint import load_checkpoint, save_checkpoint
    from .io.images import Image, default_image, from_array, load_image
    from .nn import Grade, MultiGrade
    from .ops import adam_step, block_backward, block_forward, gd_step, grade_step
    from .run import Outcome, RunConfig, run_fit
    from .tasks import FunctionTask, RegressionObjective, RegressionTask
    from .tasks.base import GradeInputs, Objective, Split, Task
    from .tasks.regression import field_pixels
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
    "Outcome",
    "RegressionObjective",
    "RegressionTask",
    "RunConfig",
    "Split",
    "Task",
    "TrainConfig",
    "__version__",
    "adam_step",
    "bind",
    "construct",
    "block_backward",
    "block_forward",
    "coordinate_grid",
    "default_image",
    "fit",
    "fit_regression",
    "from_array",
    "gd_step",
    "grade_step",
    "grid_rows",
    "load_checkpoint",
    "load_image",
    "nn",
    "ops",
    "save_checkpoint",
    "run_fit",
]


def fit_regression(
    image: Image | np.ndarray,
    model: ModelConfig | None = None,
    train: TrainConfig | None = None,
    *,
    data_range: float | None = None,
    **kwargs,
) -> FitResult:
    """Fit an image, or a field of any finite values (``[H, W]`` or ``[H, W, C]``: a
    temperature in kelvin), by coordinate regression (PROTOCOL 2); keyword arguments go to
    ``fit``. PSNRs use ``data_range`` as the peak (default: 1 for an ``Image``, the field's
    max - min for an array). Values are fitted as given: the loss is in their units squared."""
    model = model or ModelConfig()
    train = train or TrainConfig()
    pixels, span = (image.pixels, 1.0) if isinstance(image, Image) else field_pixels(image)
    task = RegressionTask(pixels, device=train.torch_device())
    peak = span if data_range is None else data_range
    return fit(task, RegressionObjective(task, peak=peak), model, train, **kwargs)
