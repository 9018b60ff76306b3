"""Reference block forward."""

from __future__ import annotations

import torch

from ..block import BlockParams
from ._scratch import scratch


def block_fwd(
    x: torch.Tensor,
    params: BlockParams,
    *,
    out: torch.Tensor | None = None,
    features_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block output for inputs ``x [N, D]`` (fp32 or bf16).

    Writes the output into ``out [N, C]`` (params' dtype; allocated when None) and, when given,
    the last hidden layer into ``features_out [N, W]`` (fp32 or bf16: the next grade's cached
    features). Returns ``out``.
    """
    dtype, n = params.flat.dtype, x.shape[0]
    h = x.to(dtype)
    for layer, (w, b) in enumerate(zip(params.weights[:-1], params.biases[:-1])):
        buf = scratch(f"h{layer + 1}", (n, w.shape[1]), dtype, x.device)
        h = torch.addmm(b, h, w, out=buf).relu_()
    if features_out is not None:
        features_out.copy_(h)
    if out is None:
        out = torch.empty(n, params.shape.out_dim, dtype=dtype, device=x.device)
    return torch.addmm(params.biases[-1], h, params.weights[-1], out=out)
