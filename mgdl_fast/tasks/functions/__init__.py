"""Function approximation tasks (PROTOCOL 6): the papers' 1D sums of sines and our 2D target."""

from .sines import SETTINGS, FunctionTask, sum_of_sines
from .target2d import function_2d, target_2d

__all__ = ["SETTINGS", "FunctionTask", "function_2d", "sum_of_sines", "target_2d"]
