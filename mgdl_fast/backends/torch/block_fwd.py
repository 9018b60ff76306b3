"""Torch block forward."""

from __future__ import annotations

import torch


def block_fwd(x, weights, biases, out, features_out, views) -> None:
    """``out [n, C] = block(x [n, D])``; the last hidden layer into ``features_out [n, W]``
    (fp32 or bf16: the next grade's cached features) when given."""
    x32, hidden, _, _ = views
    h = x if x32 is None else x32.copy_(x)
    for buf, w, b in zip(hidden, weights[:-1], biases[:-1]):
        h = torch.addmm(b, h, w, out=buf).relu_()
    if features_out is not None:
        features_out.copy_(h)
    torch.addmm(biases[-1], h, weights[-1], out=out)
