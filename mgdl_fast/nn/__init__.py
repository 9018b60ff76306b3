"""MGDL models as ``torch.nn.Module``s over the mgdl_fast ops (modules.py), input encodings as
modules of plain torch ops (encoding.py), and their export to plain PyTorch (sequential.py)."""

from .encoding import InputEncoding
from .modules import Grade, MultiGrade

__all__ = ["Grade", "InputEncoding", "MultiGrade"]
