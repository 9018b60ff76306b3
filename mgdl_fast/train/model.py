"""A trained multi-grade model: frozen grades whose outputs add up to the prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..backends import bind
from ..backends.base import Options, check_tensor
from ..backends.engine import Engine
from ..block import BlockParams
from ..encoding import Encoding
from ..errors import InputError
from ..grid import grid_rows

if TYPE_CHECKING:
    from ..nn import MultiGrade

DEFAULT_CHUNK = 1 << 16


class MultiGradeModel:
    """Frozen grades ``g_1..g_K``: grade 1 reads the inputs, grade k+1 reads grade k's last hidden
    features, and the prediction is ``sum_k scale_k * output_k`` (scales are 1 for regression).

    An SGDL network is the one-grade case. With an ``encoding`` (Fourier or positional
    features), inputs are encoded before grade 1 reads them.
    """

    def __init__(
        self,
        grades: list[BlockParams] | None = None,
        scales: list[float] | None = None,
        encoding: Encoding | None = None,
    ):
        self.grades: list[BlockParams] = list(grades or [])
        self.scales: list[float] = list(scales) if scales is not None else [1.0] * len(self.grades)
        self.encoding = encoding
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

    @property
    def in_dim(self) -> int:
        """What the model reads: the coordinates' dim (before any encoding)."""
        return self.encoding.in_dim if self.encoding else self.grades[0].shape.in_dim

    def to(self, device: torch.device | str) -> MultiGradeModel:
        grades = [BlockParams(p.shape, p.flat.to(device)) for p in self.grades]
        encoding = self.encoding.to(device) if self.encoding else None
        return MultiGradeModel(grades, self.scales, encoding)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoding(x) if self.encoding is not None else x

    def to_module(self, **kwargs) -> MultiGrade:
        """The grades as a ``mgdl_fast.nn.MultiGrade`` module (copies, frozen), the input
        encoding as its ``InputEncoding``; keyword arguments (backend, precision,
        deterministic) go to every grade."""
        from ..nn import MultiGrade

        return MultiGrade.from_model(self, **kwargs)

    def _grades(self, num_grades: int | None) -> list[BlockParams]:
        """The first ``num_grades`` grades (None: all); InputError for an empty model or a
        count out of range."""
        if not self.grades:
            raise InputError("the model has no grades")
        if num_grades is None:
            return self.grades
        if not isinstance(num_grades, int) or not 1 <= num_grades <= len(self):
            raise InputError(f"num_grades must be 1-{len(self)}, got {num_grades!r}")
        return self.grades[:num_grades]

    def _check_inputs(self, x: object, chunk_size: object) -> None:
        check_tensor("x", x, rows=None, cols=self.in_dim, dtypes=(torch.float32,),
                     device=self.device)  # fmt: skip
        _positive("chunk_size", chunk_size)

    def bind(
        self,
        rows: int,
        *,
        num_grades: int | None = None,
        backend: str | None = None,
        options: Options | None = None,
    ) -> list[Engine]:
        """One engine per grade for up to ``rows`` rows per call (fp32 inputs and features)."""
        return [
            bind(p.shape, device=self.device, rows=rows, options=options, backend=backend)
            for p in self._grades(num_grades)
        ]

    @torch.no_grad()
    def predict(
        self,
        x: torch.Tensor,
        *,
        num_grades: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        backend: str | None = None,
        engines: list[Engine] | None = None,
    ) -> torch.Tensor:
        """Sum of the first ``num_grades`` grades' outputs ``[N, C]`` for inputs ``x [N, D]``.

        Runs ``chunk_size`` rows at a time through every grade, so memory stays bounded by
        ``chunk_size x width`` whatever N is. ``x`` is fp32, on the model's device.
        """
        grades = self._grades(num_grades)
        self._check_inputs(x, chunk_size)
        chunk = min(chunk_size, x.shape[0])
        engines = engines or self.bind(chunk, num_grades=len(grades), backend=backend)
        out = torch.zeros(x.shape[0], grades[-1].shape.out_dim, device=x.device)
        part = torch.empty(chunk, grades[-1].shape.out_dim, device=x.device)
        feats = [torch.empty(chunk, p.shape.width, device=x.device) for p in grades[:-1]]
        for start in range(0, x.shape[0], chunk):
            h = self._encode(x[start : start + chunk])
            n = h.shape[0]
            for k, (params, engine, scale) in enumerate(zip(grades, engines, self.scales)):
                last = k + 1 == len(grades)
                engine.forward(h, params.flat, part[:n], None if last else feats[k][:n])
                out[start : start + n].add_(part[:n], alpha=scale)
                if not last:
                    h = feats[k][:n]
        return out

    @torch.no_grad()
    def features(
        self, x: torch.Tensor, *, chunk_size: int = DEFAULT_CHUNK, backend: str | None = None
    ) -> torch.Tensor:
        """Last hidden features ``[N, W]`` of the newest grade, chaining through every grade."""
        self._grades(None)
        self._check_inputs(x, chunk_size)
        chunk = min(chunk_size, x.shape[0])
        engines = self.bind(chunk, backend=backend)
        result = torch.empty(x.shape[0], self.grades[-1].shape.width, device=x.device)
        part = torch.empty(chunk, self.grades[-1].shape.out_dim, device=x.device)
        feats = [torch.empty(chunk, p.shape.width, device=x.device) for p in self.grades]
        for start in range(0, x.shape[0], chunk):
            h = self._encode(x[start : start + chunk])
            n = h.shape[0]
            for params, engine, buf in zip(self.grades, engines, feats):
                engine.forward(h, params.flat, part[:n], buf[:n])
                h = buf[:n]
            result[start : start + n] = h
        return result

    def render(
        self,
        height: int,
        width: int,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        backend: str | None = None,
    ) -> torch.Tensor:
        """The image ``[H, W, C]`` the model predicts on an ``H x W`` coordinate grid, built
        band by band (the whole grid is never held)."""
        self._grades(None)
        _positive("height", height)
        _positive("width", width)
        _positive("chunk_size", chunk_size)
        band = max(1, chunk_size // width)
        engines = self.bind(min(band * width, height * width), backend=backend)
        image = torch.empty(height, width, self.grades[-1].shape.out_dim, device=self.device)
        for top in range(0, height, band):
            bottom = min(height, top + band)
            coords = grid_rows(height, width, top, bottom, device=self.device)
            pixels = self.predict(coords, chunk_size=coords.shape[0], engines=engines)
            image[top:bottom] = pixels.reshape(bottom - top, width, -1)
        return image


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
