"""Manual forward/backward of a block into an engine's buffers, shared by the torch ops.

Out-of-autograd torch ops write into buffers the engine allocated at bind time, so a training
step costs the GEMMs and a few elementwise passes: no graph bookkeeping, no allocation, and no
page faults (glibc returns freed multi-megabyte blocks to the OS, so fresh ``[N, W]``
activations every step fault all over again: measured on a 2-core CPU at N = 16384, W = 128,
19.5 ms per step with fresh tensors against 11.4 ms with reused ones).
"""

from __future__ import annotations

import torch


class Buffers:
    """Activations of up to ``rows`` rows: the fp32 copy of bf16 inputs ``x [rows, D]``, the
    hidden layers ``hidden [L] x [rows, W]``, two gradient buffers ``grads [2] x [rows, W]``,
    the output ``[rows, C]``, its squares and the loss. ``take(n)`` gives views of n rows."""

    def __init__(self, x, hidden, grads, out, squares, loss):
        self.x, self.hidden, self.grads = x, hidden, grads
        self.out, self.squares, self.loss = out, squares, loss
        self._full = self._views(out.shape[0])
        # Scalars of the loss as 0-dim tensors (a Python scalar operand allocates per call).
        self.half = torch.full((), 0.5, device=loss.device)
        self._counts: dict[int, torch.Tensor] = {}

    def count(self, numel: int) -> torch.Tensor:
        """``numel`` as a 0-dim fp32 tensor (made once per size, see ``prepare``)."""
        if numel not in self._counts:
            self._counts[numel] = torch.full((), float(numel), device=self.loss.device)
        return self._counts[numel]

    def _views(self, n: int):
        x = None if self.x is None else self.x[:n]
        return x, [h[:n] for h in self.hidden], [g[:n] for g in self.grads], self.out[:n]

    def take(self, n: int):
        """(x copy or None, hidden, grads, out) views of the first ``n`` rows."""
        return self._full if n == self.out.shape[0] else self._views(n)


def forward_keep(x, weights, biases, views) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Forward keeping every activation: ``hs = [h_0 = x (fp32), h_1, ..., h_L]`` and the
    output, all in the buffers of ``views`` (valid until the engine's next call)."""
    x32, hidden, _, out = views
    h = x if x32 is None else x32.copy_(x)
    hs = [h]
    for buf, w, b in zip(hidden, weights[:-1], biases[:-1]):
        h = torch.addmm(b, h, w, out=buf).relu_()
        hs.append(h)
    return hs, torch.addmm(biases[-1], h, weights[-1], out=out)


def backward(hs, weights, grad_out, grad_w, grad_b, grad_x, views) -> None:
    """dL/dparams into the ``grad_w``/``grad_b`` views (and dL/dx into ``grad_x``) from
    ``grad_out [n, C]``, through the activations ``hs`` of ``forward_keep``."""
    g, buffers = grad_out, views[2]
    last = len(weights) - 1
    for layer in range(last, -1, -1):
        torch.mm(hs[layer].T, g, out=grad_w[layer])
        torch.sum(g, dim=0, out=grad_b[layer])
        if layer > 0:
            g = torch.mm(g, weights[layer].T, out=buffers[layer % 2])
            # ReLU backward in place: h_l = 0 exactly where the pre-activation was <= 0.
            torch.ops.aten.threshold_backward.grad_input(g, hs[layer], 0.0, grad_input=g)
    if grad_x is not None:
        torch.mm(g, weights[0].T, out=grad_x)
