"""A grade's ReLU block: shape, flat parameter storage and the papers' initialisation.

A block maps inputs ``x [N, D]`` through ``L`` hidden layers ``h_l = relu(h_{l-1} @ W_l + b_l)``
of width ``W`` to the output ``h_L @ W_o + b_o`` of shape ``[N, C]``. Weights are stored
``[in, out]`` (``x @ W``, as in the papers' JAX code). All parameters of a block live in one
contiguous fp32 vector ``flat [P]`` ordered ``W_1, b_1, ..., W_L, b_L, W_o, b_o``; weights and
biases are views into it. One flat vector lets an optimizer, a fused kernel or a Hessian treat a
grade as a single tensor, and gradients use the same layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Protocol

import torch

from .errors import InputError

# 0.8796... = std of a standard normal truncated to [-2, 2]; dividing by it makes the truncated
# distribution's variance the Glorot target (jax.nn.initializers.variance_scaling).
_TRUNC_NORMAL_STD = 0.87962566103423978
BIAS_INIT_STD = 1e-2
INIT_SCHEMES = ("glorot", "he")


@dataclass(frozen=True)
class BlockShape:
    """Sizes of one block: input dim D, width W, hidden layers L, output channels C."""

    in_dim: int
    width: int
    hidden_layers: int
    out_dim: int

    def __post_init__(self) -> None:
        for name in ("in_dim", "width", "hidden_layers", "out_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"block {name} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> BlockShape:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    @cached_property
    def layer_dims(self) -> tuple[tuple[int, int], ...]:
        """(in, out) of every affine layer, hidden layers first, output layer last."""
        dims = [self.in_dim] + [self.width] * self.hidden_layers
        return tuple(zip(dims, dims[1:] + [self.out_dim]))

    @cached_property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """(weight offset, bias offset) of every layer in the flat vector."""
        result, pos = [], 0
        for fan_in, fan_out in self.layer_dims:
            result.append((pos, pos + fan_in * fan_out))
            pos += fan_in * fan_out + fan_out
        return tuple(result)

    @property
    def num_params(self) -> int:
        return sum(i * o + o for i, o in self.layer_dims)

    def views(self, flat: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Weight views ``[in, out]`` and bias views ``[out]`` into a flat ``[P]`` tensor."""
        if flat.shape != (self.num_params,):
            raise ValueError(
                f"flat parameters must have shape ({self.num_params},), got {tuple(flat.shape)}"
            )
        weights, biases = [], []
        for (fan_in, fan_out), (w_off, b_off) in zip(self.layer_dims, self.offsets):
            weights.append(flat[w_off : w_off + fan_in * fan_out].view(fan_in, fan_out))
            biases.append(flat[b_off : b_off + fan_out])
        return weights, biases


class FlatParams(Protocol):
    """What an optimizer and the training loop work on: a flat parameter vector (one grade's
    ``BlockParams``, or every MSDL subnet's ``StackedParams``) that makes a zeroed twin of
    itself for its gradient."""

    flat: torch.Tensor

    def zeros_like(self) -> FlatParams: ...


class BlockParams:
    """Parameters of one block: ``flat [P]`` plus ``weights``/``biases`` views into it.

    A non-contiguous ``flat`` (a column of a matrix) is made contiguous: ``flat`` is then a
    copy (differentiable, so gradients still reach the original), and in-place updates of it
    (``adam_step``, ``gd_step``) do not write the original."""

    def __init__(self, shape: BlockShape, flat: torch.Tensor):
        self.shape = shape
        self.flat = flat.contiguous() if isinstance(flat, torch.Tensor) else flat
        self.weights, self.biases = shape.views(flat)

    @classmethod
    def init(
        cls,
        shape: BlockShape,
        seed: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        scheme: str = "glorot",
    ) -> BlockParams:
        """The papers' init: truncated Glorot-normal weights, N(0, 0.01^2) biases.

        Weights ~ N(0, s^2) truncated to +-2s with s = sqrt(2 / (fan_in + fan_out)) / 0.8796
        (stax.Dense's glorot_normal); biases ~ N(0, 1e-2^2). ``scheme="he"`` is the eigenvalue
        experiments' init instead (PROTOCOL 4): weights ~ N(0, 2 / fan_in), zero biases. Drawn
        on the CPU from ``seed`` so the same seed gives the same block on every device.
        """
        if scheme not in INIT_SCHEMES:
            raise InputError(f"init scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
        gen = torch.Generator().manual_seed(seed)
        flat = torch.zeros(shape.num_params, dtype=torch.float64)
        weights, biases = shape.views(flat)
        for (fan_in, fan_out), w, b in zip(shape.layer_dims, weights, biases):
            if scheme == "he":
                w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
                continue
            std = math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNC_NORMAL_STD
            torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std, generator=gen)
            b.normal_(0.0, BIAS_INIT_STD, generator=gen)
        return cls(shape, flat.to(device=device, dtype=dtype))

    def clone(self) -> BlockParams:
        return BlockParams(self.shape, self.flat.detach().clone())

    def zeros_like(self) -> BlockParams:
        """A block of zeros with the same layout (gradients, optimizer moments)."""
        return BlockParams(self.shape, torch.zeros_like(self.flat))
