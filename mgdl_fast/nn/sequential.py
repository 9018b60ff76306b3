"""A multi-grade prediction as one ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``.

MGDL's prediction ``sum_k scale_k * output_k`` branches off every grade, which a plain stack
cannot do; instead every hidden layer carries the running sum ``acc [C]`` beside the grade's
features as the two ReLU-proof channels ``relu(acc)`` and ``relu(-acc)``, whose difference is
``acc`` exactly (one of them is 0). Layers are ``W + 2C`` wide; the extra rows are zeros and
identities, so the stack computes the same sums (up to the order of fp32 additions).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["carry_stack", "linear"]

Block = tuple[list[Tensor], list[Tensor]]


def linear(weight: Tensor, bias: Tensor) -> nn.Linear:
    """``nn.Linear`` holding ``weight [out, in]`` and ``bias [out]``."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def _head(w_out: Tensor, b_out: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """``[C, W + 2C]`` and ``[C]``: ``acc + scale * (h @ w_out + b_out)`` from
    ``(h, relu(acc), relu(-acc))``."""
    eye = torch.eye(w_out.shape[1], dtype=w_out.dtype, device=w_out.device)
    return torch.cat([scale * w_out.T, eye, -eye], 1), scale * b_out


def _both_signs(w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Rows computing ``(v, -v)`` from rows computing ``v``: the next ReLU keeps ``relu(v)``
    and ``relu(-v)``."""
    return torch.cat([w, -w]), torch.cat([b, -b])


def _layer(w: Tensor, b: Tensor, carry: tuple[Tensor, Tensor]) -> nn.Linear:
    """A hidden layer ``w [in, W]``, ``b [W]`` widened by the carry rows ``carry``
    (``[2C, fan_in]``, ``[2C]``): ``nn.Linear(fan_in, W + 2C)``."""
    carry_w, carry_b = carry
    weight = torch.zeros(w.shape[1] + carry_w.shape[0], carry_w.shape[1], dtype=w.dtype,
                         device=w.device)  # fmt: skip
    weight[: w.shape[1], : w.shape[0]] = w.T
    weight[w.shape[1] :] = carry_w
    return linear(weight, torch.cat([b, carry_b]))


def carry_stack(blocks: list[Block], scales: list[float]) -> nn.Sequential:
    """The stack for grades given as ``(weights [in, out], biases [out])``, hidden layers
    first and the output layer last, and their prediction scales."""
    first = blocks[0][0][0]
    c = blocks[0][0][-1].shape[1]
    zeros = first.new_zeros(2 * c, first.shape[0]), first.new_zeros(2 * c)
    # acc = 0 before grade 1; within a grade each layer passes (acc, -acc) on.
    carry = zeros
    layers: list[nn.Module] = []
    for (weights, biases), scale in zip(blocks, scales):
        for w, b in zip(weights[:-1], biases[:-1]):
            layers += [_layer(w.detach(), b.detach(), carry), nn.ReLU()]
            eye = torch.eye(c, dtype=w.dtype, device=w.device)
            passing = torch.cat([w.new_zeros(c, w.shape[1]), eye, -eye], 1)
            carry = _both_signs(passing, w.new_zeros(c))
        carry = _both_signs(*_head(weights[-1].detach(), biases[-1].detach(), scale))
    layers.append(linear(carry[0][:c], carry[1][:c]))
    return nn.Sequential(*layers)
