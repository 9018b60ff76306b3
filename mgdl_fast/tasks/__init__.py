"""Tasks: how an image (or function) becomes inputs, targets, a loss and metrics."""

from .regression import RegressionTask, Split, coordinate_grid, psnr_from_loss
from .synthetic import FunctionTask

__all__ = ["FunctionTask", "RegressionTask", "Split", "coordinate_grid", "psnr_from_loss"]
