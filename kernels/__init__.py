"""Triton kernels of mgdl_fast, installed as ``mgdl_fast.kernels``.

Kernels only compute; ``mgdl_fast._triton`` checks inputs, allocates and launches them.

- ``block_fwd``: block output and, optionally, the last hidden layer (cached features).
- ``grade_step``: fused 0.5 * MSE training step (forward, loss, backward, dW partial sums).
- ``block_bwd``: backward from a given dL/dout, recomputing the forward.
- ``reduce``: deterministic sum of the training kernels' per-program partial gradients.
- ``optim``: fused Adam and gradient-descent updates of the flat parameter vector.
- ``_block`` / ``_backward``: the shared per-tile math; ``_config``: tile shapes (no Triton).
"""
