"""MGDL models as ``torch.nn.Module``s over the mgdl_fast ops (modules.py), and their export
to plain PyTorch (sequential.py)."""

from .modules import Grade, MultiGrade

__all__ = ["Grade", "MultiGrade"]
