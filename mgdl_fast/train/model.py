"""A trained multi-grade model: frozen grades whose outputs add up to the prediction."""

from __future__ import annotations

import torch

from .block import BlockParams
from .dispatch import resolve
from .tasks.regression import coordinate_grid

DEFAULT_CHUNK = 1 << 16


class MultiGradeModel:
    """Frozen grades ``g_1..g_K``: grade 1 reads the inputs, grade k+1 reads grade k's last hidden
    features, and the prediction is ``sum_k scale_k * output_k`` (scales are 1 for regression).

    An SGDL network is the one-grade case.
    """

    def __init__(self, grades: list[BlockParams] | None = None, scales: list[float] | None = None):
        self.grades: list[BlockParams] = list(grades or [])
        self.scales: list[float] = list(scales) if scales is not None else [1.0] * len(self.grades)
        if len(self.scales) != len(self.grades):
            raise ValueError("one scale per grade")

    def __len__(self) -> int:
        return len(self.grades)

    def append(self, params: BlockParams, scale: float = 1.0) -> None:
        if self.grades and params.shape.in_dim != self.grades[-1].shape.width:
            raise ValueError(
                f"grade {len(self) + 1} reads {params.shape.in_dim} features but grade "
                f"{len(self)} has width {self.grades[-1].shape.width}"
            )
        self.grades.append(params)
        self.scales.append(float(scale))

    @property
    def device(self) -> torch.device:
        return self.grades[0].flat.device

    def to(self, device: torch.device | str) -> MultiGradeModel:
        grades = [BlockParams(p.shape, p.flat.to(device)) for p in self.grades]
        return MultiGradeModel(grades, self.scales)

    @torch.no_grad()
    def predict(
        self,
        x: torch.Tensor,
        *,
        num_grades: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        backend: str | None = None,
    ) -> torch.Tensor:
        """Sum of the first ``num_grades`` grades' outputs ``[N, C]`` for inputs ``x [N, D]``.

        Runs ``chunk_size`` rows at a time through every grade, so memory stays bounded by
        ``chunk_size x width`` whatever N is.
        """
        grades = self.grades[: num_grades or len(self)]
        out = torch.zeros(x.shape[0], grades[-1].shape.out_dim, device=x.device)
        fwd_ops = [resolve("block_fwd", x, p, backend=backend)[1] for p in grades]
        for start in range(0, x.shape[0], chunk_size):
            h = x[start : start + chunk_size]
            for k, (params, fwd, scale) in enumerate(zip(grades, fwd_ops, self.scales)):
                feats = None
                if k + 1 < len(grades):
                    feats = torch.empty(h.shape[0], params.shape.width, device=x.device)
                out[start : start + h.shape[0]].add_(
                    fwd(h, params, features_out=feats), alpha=scale
                )
                h = feats
        return out

    @torch.no_grad()
    def features(self, x: torch.Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Last hidden features ``[N, W]`` of the newest grade, chaining through every grade."""
        result = torch.empty(x.shape[0], self.grades[-1].shape.width, device=x.device)
        fwd_ops = [resolve("block_fwd", x, p)[1] for p in self.grades]
        for start in range(0, x.shape[0], chunk_size):
            h = x[start : start + chunk_size]
            for params, fwd in zip(self.grades, fwd_ops):
                feats = torch.empty(h.shape[0], params.shape.width, device=x.device)
                fwd(h, params, features_out=feats)
                h = feats
            result[start : start + h.shape[0]] = h
        return result

    def render(self, height: int, width: int, *, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
        """The image ``[H, W, C]`` the model predicts on an ``H x W`` coordinate grid."""
        grid = coordinate_grid(height, width).reshape(-1, 2).to(self.device)
        return self.predict(grid, chunk_size=chunk_size).reshape(height, width, -1)
