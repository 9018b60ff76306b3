"""mgdl_fast: a custom-kernel engine for multi-grade deep learning (MGDL).

Importing never compiles or probes a GPU; Triton and the CUDA extension load on first use.
"""

from .block import BlockParams, BlockShape
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig
from .errors import BackendUnavailableError, DivergenceError, InputError, MGDLError
from .images import Image, default_image, from_array, load_image
from .model import MultiGradeModel
from .ops import block_forward
from .tasks import RegressionTask
from .trainer import FitResult, fit

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BlockParams",
    "BlockShape",
    "DivergenceError",
    "FitResult",
    "Image",
    "InputError",
    "MGDLError",
    "ModelConfig",
    "MultiGradeModel",
    "RegressionTask",
    "TrainConfig",
    "__version__",
    "block_forward",
    "default_image",
    "fit",
    "fit_regression",
    "from_array",
    "load_checkpoint",
    "load_image",
    "save_checkpoint",
]


def fit_regression(
    image: Image, model: ModelConfig | None = None, train: TrainConfig | None = None, **kwargs
) -> FitResult:
    """Fit an image by coordinate regression (PROTOCOL 2); keyword arguments go to ``fit``."""
    from .objectives import RegressionObjective

    model = model or ModelConfig()
    train = train or TrainConfig()
    task = RegressionTask(image.pixels, device=train.torch_device())
    objective = RegressionObjective(task, backend=train.backend, chunk_size=train.chunk_size)
    return fit(task, objective, model, train, **kwargs)
