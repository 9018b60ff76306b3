"""Training: the grade loop shared by MGDL, SGDL and MSDL, the model, the feature cache, the
optimizer, early stopping and the metric history."""

from .config import ModelConfig, TrainConfig
from .history import GradeRecord, MetricLog
from .loop import GradeHook, run_grade
from .model import MultiGradeModel
from .trainer import FitResult, fit, grade_shapes

__all__ = [
    "FitResult",
    "GradeHook",
    "GradeRecord",
    "MetricLog",
    "ModelConfig",
    "MultiGradeModel",
    "TrainConfig",
    "fit",
    "grade_shapes",
    "run_grade",
]
