"""Tasks: how an image (or function) becomes inputs, targets, a loss and metrics."""

from .regression import RegressionTask, coordinate_grid, psnr_from_loss

__all__ = ["RegressionTask", "coordinate_grid", "psnr_from_loss"]
