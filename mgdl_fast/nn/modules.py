"""MGDL models as ``torch.nn.Module``s over the mgdl_fast ops.

``Grade`` is one block: a flat fp32 parameter ``flat [P]`` (BlockParams layout) with weight
``[in, out]`` and bias views, whose forward is ``mgdl_fast.block_forward`` on the module's
backend. ``MultiGrade`` chains grades the MGDL way (grade k+1 reads grade k's last hidden
features, grade 1 the inputs through an optional ``InputEncoding``; the prediction is
``sum_k scale_k * output_k``), with ``state_dict`` / ``load_state_dict``, freezing of trained
grades, ``features(x)``, and conversion from and to the trainer's ``MultiGradeModel``.
``to_sequential()`` exports either to a plain ``nn.Sequential`` of ``nn.Linear`` and
``nn.ReLU`` (after the encoding, when there is one) that runs without the mgdl_fast ops.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..block import BlockParams, BlockShape
from ..errors import InputError
from ..ops import block_forward
from ..train.model import MultiGradeModel
from .encoding import InputEncoding
from .sequential import carry_stack, linear

__all__ = ["Grade", "MultiGrade"]


class Grade(nn.Module):
    """One grade's block ``[D, W x L, C]`` as a module; ``forward(x [N, D]) -> [N, C]`` fp32.

    ``flat`` is the one parameter (initialised as ``BlockParams.init(shape, seed)`` unless
    given); ``weights``/``biases`` are views into it. ``backend``, ``precision`` and
    ``deterministic`` (None: the environment's) are passed to every op call.
    """

    def __init__(
        self,
        shape: BlockShape,
        flat: Tensor | None = None,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        deterministic: bool | None = None,
    ):
        super().__init__()
        if flat is None:
            flat = BlockParams.init(shape, seed=seed, device=device or "cpu").flat
        elif tuple(flat.shape) != (shape.num_params,) or flat.dtype != torch.float32:
            raise InputError(f"flat must be [{shape.num_params}] float32 for {shape}")
        self.shape = shape
        self.flat = nn.Parameter(flat.detach().clone().to(device or flat.device))
        self.backend, self.precision, self.deterministic = backend, precision, deterministic

    @classmethod
    def from_params(cls, params: BlockParams, **kwargs) -> Grade:
        """A module holding a copy of ``params``."""
        return cls(params.shape, params.flat, **kwargs)

    def params(self) -> BlockParams:
        """The parameters as ``BlockParams`` (sharing ``flat``: differentiable)."""
        return BlockParams(self.shape, self.flat)

    @property
    def weights(self) -> list[Tensor]:
        """Weight views ``[in, out]``, hidden layers first, the output layer last."""
        return self.shape.views(self.flat)[0]

    @property
    def biases(self) -> list[Tensor]:
        """Bias views ``[out]``, in the order of ``weights``."""
        return self.shape.views(self.flat)[1]

    def forward(self, x: Tensor, *, return_features: bool = False):
        """``[N, C]`` fp32 output for ``x [N, D]`` (with the last hidden ``[N, W]`` fp32
        when ``return_features``)."""
        return block_forward(
            x, self, return_features=return_features, backend=self.backend,
            precision=self.precision, deterministic=self.deterministic,
        )  # fmt: skip

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer ``[N, W]`` fp32 (the next grade's inputs)."""
        return self(x, return_features=True)[1]

    def freeze(self, frozen: bool = True) -> Grade:
        """Stop (or resume) training this grade; returns it."""
        self.flat.requires_grad_(not frozen)
        return self

    def to_sequential(self) -> nn.Sequential:
        """A copy as ``nn.Sequential(Linear, ReLU, ..., Linear)`` (plain PyTorch)."""
        layers: list[nn.Module] = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            if k:
                layers.append(nn.ReLU())
            layers.append(linear(w.detach().T, b.detach()))
        return nn.Sequential(*layers)

    def get_extra_state(self) -> dict:
        return {"shape": self.shape.to_dict()}

    def set_extra_state(self, state: dict) -> None:
        shape = BlockShape.from_dict(state["shape"])
        if shape != self.shape:
            raise InputError(f"state is of a {shape} grade, this module is {self.shape}")

    def extra_repr(self) -> str:
        s = self.shape
        return f"D={s.in_dim}, W={s.width}, L={s.hidden_layers}, C={s.out_dim}"


class MultiGrade(nn.Module):
    """Grades ``g_1..g_K`` as a module: ``forward(x [N, D]) = sum_k scale_k * g_k(h_{k-1})``
    with ``h_0 = x`` (or ``encoding(x)``, an ``InputEncoding``, when given) and ``h_k`` grade
    k's last hidden features ``[N, W]`` (fp32).

    ``scales`` is a buffer, so ``state_dict`` holds everything but the shapes, which each
    grade (and the encoding) checks on ``load_state_dict``. Grades stay trainable until
    ``freeze``d; the encoding has no parameters.
    """

    scales: Tensor

    def __init__(
        self,
        grades: Iterable[Grade] = (),
        scales: Iterable[float] | None = None,
        encoding: InputEncoding | None = None,
    ):
        super().__init__()
        self.encoding = encoding
        self.grades = nn.ModuleList()
        self.register_buffer("scales", torch.zeros(0))
        grades = list(grades)
        scales = [1.0] * len(grades) if scales is None else list(scales)
        if len(scales) != len(grades):
            raise InputError(f"{len(scales)} scales for {len(grades)} grades")
        for grade, scale in zip(grades, scales):
            self.append(grade, scale)

    def append(self, grade: Grade, scale: float = 1.0) -> None:
        """Add a grade reading the newest grade's features (grade 1: the encoded inputs)."""
        if len(self.grades) and grade.shape.in_dim != self[-1].shape.width:
            raise InputError(
                f"grade {len(self.grades) + 1} reads {grade.shape.in_dim} features but grade "
                f"{len(self.grades)} has width {self[-1].shape.width}"
            )
        encoding = self.encoding
        if not len(self.grades) and encoding is not None and grade.shape.in_dim != encoding.out_dim:
            raise InputError(
                f"grade 1 reads {grade.shape.in_dim} inputs but the encoding makes "
                f"{encoding.out_dim}"
            )
        self.grades.append(grade)
        scales = torch.tensor([*self.scales.tolist(), float(scale)])
        self.scales = scales.to(grade.flat.device)

    def __getitem__(self, k: int) -> Grade:
        grade = self.grades[k]
        assert isinstance(grade, Grade)
        return grade

    def __len__(self) -> int:
        return len(self.grades)

    def all(self) -> list[Grade]:
        """The grades, first to newest."""
        return [self[k] for k in range(len(self))]

    def _check(self) -> None:
        if not len(self.grades):
            raise InputError("the model has no grades")

    def forward(self, x: Tensor) -> Tensor:
        """The prediction ``[N, C]`` fp32 for ``x [N, D]``."""
        self._check()
        prediction: Tensor | None = None
        h = self._encode(x)
        for k, grade in enumerate(self.all()):
            if k + 1 < len(self.grades):
                out, h = grade(h, return_features=True)
            else:
                out = grade(h)
            term = self.scales[k] * out
            prediction = term if prediction is None else prediction + term
        assert prediction is not None
        return prediction

    def features(self, x: Tensor) -> Tensor:
        """The newest grade's last hidden features ``[N, W]`` fp32 (chained through all)."""
        self._check()
        h = self._encode(x)
        for grade in self.all():
            h = grade.features(h)
        return h

    def _encode(self, x: Tensor) -> Tensor:
        return x if self.encoding is None else self.encoding(x)

    def freeze(self, grades: int | None = None) -> MultiGrade:
        """Freeze the first ``grades`` grades (default all); the others keep their state
        (``Grade.freeze(False)`` unfreezes one). Returns the module."""
        count = len(self) if grades is None else grades
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= len(self):
            raise InputError(f"grades to freeze must be 0-{len(self)}, got {grades!r}")
        for grade in self.all()[:count]:
            grade.freeze()
        return self

    @classmethod
    def from_model(cls, model: MultiGradeModel, **kwargs) -> MultiGrade:
        """A module holding copies of a trained ``MultiGradeModel``'s grades (frozen) and of
        its input encoding (an ``InputEncoding``); keyword arguments (backend, precision, ...)
        go to every ``Grade``."""
        grades = [Grade.from_params(p, **kwargs).freeze() for p in model.grades]
        encoding = None if model.encoding is None else model.encoding.to_module()
        return cls(grades, model.scales, encoding)

    def to_model(self) -> MultiGradeModel:
        """The grades as a ``MultiGradeModel`` (copies; for ``predict``, ``render`` and
        checkpoints)."""
        self._check()
        grades = [BlockParams(g.shape, g.flat.detach().clone()) for g in self.all()]
        encoding = None if self.encoding is None else self.encoding.to_encoding()
        return MultiGradeModel(grades, self.scales.tolist(), encoding)

    def to_sequential(self) -> nn.Sequential:
        """The prediction as one plain ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``.

        Each hidden layer carries the running prediction ``acc [C]`` as ``relu(acc)`` and
        ``relu(-acc)`` beside the grade's features, ``acc = relu(acc) - relu(-acc)``
        exactly; the layer after a grade's last hidden layer adds ``scale_k * output_k`` to
        it. One grade exports as ``Grade.to_sequential()``. With an encoding, a copy of it
        (an ``InputEncoding``: cos and sin of a product, torch ops only) comes first.
        """
        self._check()
        if len(self) == 1:
            stack = _scaled(self[0].to_sequential(), float(self.scales[0]))
        else:
            blocks = [(g.weights, g.biases) for g in self.all()]
            stack = carry_stack(blocks, self.scales.tolist())
        if self.encoding is None:
            return stack
        return nn.Sequential(copy.deepcopy(self.encoding), *stack)


def _scaled(stack: nn.Sequential, scale: float) -> nn.Sequential:
    last = stack[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    return stack
