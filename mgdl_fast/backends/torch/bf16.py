"""The torch backend's bf16 precision: bf16 operands and activations, fp32 accumulation.

On CPUs with bf16 instructions (AVX512-BF16, AMX) torch's oneDNN GEMMs run several times faster
in bf16 than in fp32, and on CUDA devices of compute capability 8.0+ cuBLAS runs them on the
tensor cores (fp32 accumulation), the fallback's speed when the kernel backends cannot serve.
Converting whole activations between the two costs as much as a bf16 GEMM (PERF.md section 6),
so activations stay bf16 end to end: every ``[N, W]`` buffer is bf16,
the W x W weights are rounded to a bf16 copy per call, and each GEMM accumulates in fp32 and
rounds its result to bf16. What stays fp32: the parameters, their gradients (the bf16 GEMM
results are widened into them), the output layer's result, the loss and dL/dout, and the first
layer of a grade that reads 1-3 coordinates (rounding a coordinate to 8 bits would move the
pixel it names; that layer is a cheap K <= 3 product). Bias gradients are ``ones @ g`` GEMMs:
a bf16 column sum with fp32 accumulation, faster than ``torch.sum`` with an fp32 result.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..engine import buffer

BF16 = torch.bfloat16
CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_reason() -> str | None:
    """None when this CPU has native bf16 instructions, else why bf16 is not used."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cannot read /proc/cpuinfo to detect bf16 instructions"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    if not any(flag in flags.split() for flag in CPU_FLAGS):
        return f"this CPU has none of {', '.join(CPU_FLAGS)}"
    return None


def cuda_bf16_reason(device: torch.device) -> str | None:
    """None when ``device`` has bf16 tensor cores (compute capability 8.0+), else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"{device} has compute capability {major}.{minor} (bf16 tensor cores need 8.0)"
    return None


class Bf16Buffers:
    """Everything a bf16 forward/step/backward writes, for up to ``rows`` rows."""

    def __init__(self, shape, rows: int, device: torch.device):
        w, c, d = shape.width, shape.out_dim, shape.in_dim
        self.small_input = d != w
        self.x16 = buffer((rows, d), BF16, device)
        self.first32 = buffer((rows, w), torch.float32, device) if self.small_input else None
        self.x32 = buffer((rows, d), torch.float32, device)
        self.hidden = [buffer((rows, w), BF16, device) for _ in range(shape.hidden_layers)]
        self.grads = [buffer((rows, w), BF16, device) for _ in range(2)]
        self.weights = [
            buffer((fan_in, fan_out), BF16, device) for fan_in, fan_out in shape.layer_dims
        ]
        self.biases = [buffer((w,), BF16, device) for _ in range(shape.hidden_layers)]
        self.grad_x16 = buffer((rows, d), BF16, device)
        self.out16 = buffer((rows, c), BF16, device)
        self.out = buffer((rows, c), torch.float32, device)
        self.g_out16 = buffer((rows, c), BF16, device)
        self.squares = buffer((rows, c), torch.float32, device)
        self.loss = buffer((), torch.float32, device)
        self.square16 = buffer((w, w), BF16, device)
        self.first16 = buffer((d, w), BF16, device)
        self.out_w16 = buffer((w, c), BF16, device)
        self.bias16 = buffer((1, w), BF16, device)
        self.ones = buffer((1, rows), BF16, device).fill_(1.0)
        self.half = torch.full((), 0.5, device=device)
        self._counts: dict[int, torch.Tensor] = {}

    def count(self, numel: int) -> torch.Tensor:
        if numel not in self._counts:
            self._counts[numel] = torch.full((), float(numel), device=self.loss.device)
        return self._counts[numel]


def forward(bufs: Bf16Buffers, x, weights, biases, n: int) -> list[torch.Tensor]:
    """Hidden activations ``[h_0 (x in bf16), h_1, ..., h_L]`` (bf16 views of n rows) and the
    fp32 output in ``bufs.out[:n]``."""
    for w16, w in zip(bufs.weights, weights):
        w16.copy_(w)
    for b16, b in zip(bufs.biases, biases[:-1]):
        b16.copy_(b)
    x16 = bufs.x16[:n].copy_(x) if x.dtype != BF16 else x
    hs = [x16]
    first = bufs.hidden[0][:n]
    if bufs.small_input:
        assert bufs.first32 is not None
        x32 = x if x.dtype == torch.float32 else bufs.x32[:n].copy_(x)
        torch.addmm(biases[0], x32, weights[0], out=bufs.first32[:n])
        first.copy_(bufs.first32[:n]).relu_()
    else:
        torch.addmm(bufs.biases[0], x16, bufs.weights[0], out=first).relu_()
    hs.append(first)
    for layer in range(1, len(bufs.hidden)):
        h = bufs.hidden[layer][:n]
        torch.addmm(bufs.biases[layer], hs[-1], bufs.weights[layer], out=h).relu_()
        hs.append(h)
    torch.mm(hs[-1], bufs.weights[-1], out=bufs.out16[:n])
    bufs.out[:n].copy_(bufs.out16[:n]).add_(biases[-1])
    return hs


def backward(bufs: Bf16Buffers, hs, grad_out, grad_w, grad_b, grad_x) -> None:
    """dL/dparams (fp32 views) from ``grad_out [n, C]`` fp32 through the activations ``hs``;
    dL/dx into ``grad_x`` (fp32) when given."""
    n = grad_out.shape[0]
    ones = bufs.ones[:, :n]
    g16 = bufs.g_out16[:n].copy_(grad_out)
    last = len(hs) - 1
    grad_w[last].copy_(torch.mm(hs[last].T, g16, out=bufs.out_w16))
    torch.sum(grad_out, dim=0, out=grad_b[last])
    g = torch.mm(g16, bufs.weights[last].T, out=bufs.grads[last % 2][:n])
    for layer in range(last - 1, -1, -1):
        torch.ops.aten.threshold_backward.grad_input(g, hs[layer + 1], 0.0, grad_input=g)
        scratch = bufs.square16 if layer > 0 or not bufs.small_input else bufs.first16
        grad_w[layer].copy_(torch.mm(hs[layer].T, g, out=scratch))
        grad_b[layer].copy_(torch.mm(ones, g, out=bufs.bias16)[0])
        if layer > 0:
            g = torch.mm(g, bufs.weights[layer].T, out=bufs.grads[layer % 2][:n])
    if grad_x is not None:
        grad_x.copy_(torch.mm(g, bufs.weights[0].T, out=bufs.grad_x16[:n]))


def step(bufs: Bf16Buffers, x, y, weights, biases, grad_w, grad_b) -> torch.Tensor:
    """0.5 * mean((block(x) - y)^2) into ``bufs.loss``, its gradient into the fp32 views."""
    n = x.shape[0]
    hs = forward(bufs, x, weights, biases, n)
    diff = bufs.out[:n].sub_(y)
    squares = bufs.squares[:n]
    torch.mul(diff, diff, out=squares)
    torch.mean(squares, dim=(0, 1), out=bufs.loss).mul_(bufs.half)
    torch.div(diff, bufs.count(y.numel()), out=diff)
    backward(bufs, hs, diff, grad_w, grad_b, None)
    return bufs.loss
