"""Triton kernels of mgdl_fast, installed as ``mgdl_fast.kernels``.

Kernels only compute; ``mgdl_fast._triton`` checks inputs, allocates and launches them.
"""
