"""Triton kernels of mgdl_fast, installed as ``mgdl_fast.kernels``.

Kernels only compute; ``mgdl_fast.backends.triton`` checks, allocates and launches them. Every
block kernel is persistent (one program per SM, weights loaded once per program) and holds
activations transposed, features x rows (see ``_block``).

- ``block_fwd``: block output and, optionally, the last hidden layer (cached features).
- ``grade_step``: fused 0.5 * MSE training step (forward, loss, backward, per-program sums).
- ``block_bwd``: backward from a given dL/dout, recomputing the forward.
- ``weight_grad``: h^T g of the W x W layers whose weight gradients do not fit in registers.
- ``reduce``: fixed-order sum of the training kernels' per-program partial gradients.
- ``optim``: fused Adam and gradient-descent updates of the flat parameter vector.
- ``_block`` / ``_backward``: the shared per-tile math; ``_config``: tile shapes (no Triton).
"""
