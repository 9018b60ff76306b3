"""A hand-written float64 NumPy block: forward and backward written out by hand, independent of
torch, used as the oracle for the reference ops."""

from __future__ import annotations

import numpy as np

from mgdl_fast.block import BlockShape


def unpack(flat: np.ndarray, shape: BlockShape) -> list[tuple[np.ndarray, np.ndarray]]:
    layers, pos = [], 0
    for fan_in, fan_out in shape.layer_dims:
        w = flat[pos : pos + fan_in * fan_out].reshape(fan_in, fan_out)
        pos += fan_in * fan_out
        layers.append((w, flat[pos : pos + fan_out]))
        pos += fan_out
    return layers


def forward(flat: np.ndarray, x: np.ndarray, shape: BlockShape):
    """Returns (output [N, C], pre-activations, activations [h_0 .. h_L])."""
    layers = unpack(flat, shape)
    hs, pre = [x], []
    for w, b in layers[:-1]:
        a = hs[-1] @ w + b
        pre.append(a)
        hs.append(np.maximum(a, 0.0))
    w, b = layers[-1]
    return hs[-1] @ w + b, pre, hs


def backward(flat: np.ndarray, x: np.ndarray, shape: BlockShape, grad_out: np.ndarray):
    """dL/dflat [P] and dL/dx [N, D] for a given dL/dout [N, C]."""
    layers = unpack(flat, shape)
    _, pre, hs = forward(flat, x, shape)
    grads = []
    g = grad_out
    for layer in range(len(layers) - 1, -1, -1):
        w, _ = layers[layer]
        grads.append((hs[layer].T @ g, g.sum(axis=0)))
        g = g @ w.T
        if layer > 0:
            g = g * (pre[layer - 1] > 0)
    grads.reverse()
    return np.concatenate([np.concatenate([dw.ravel(), db]) for dw, db in grads]), g


def mse_loss_and_grad(flat: np.ndarray, x: np.ndarray, y: np.ndarray, shape: BlockShape):
    out, _, _ = forward(flat, x, shape)
    diff = out - y
    loss = 0.5 * np.mean(diff**2)
    grad, _ = backward(flat, x, shape, diff / diff.size)
    return loss, grad
