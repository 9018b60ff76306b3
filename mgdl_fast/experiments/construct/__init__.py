"""Paper 2 (Zhang, Shen & Xu 2026): the constructive multigrade scheme (our construction, as
explicit ReLU networks) and the trained studies around it (docs/APPROXIMATION.md)."""

from .model import NORMS, ConstructedGrade, ConstructedModel, construct

__all__ = ["NORMS", "ConstructedGrade", "ConstructedModel", "construct"]
