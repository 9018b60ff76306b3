"""A compatibility fix for Triton 3.6's CPU interpreter under NumPy >= 2.4.

The interpreter turns a run-time loop bound (``range(pid, num_tiles, ...)``) into a Python int
with ``int()`` of a 1-element array, which NumPy 2.4 refuses ("only 0-dimensional arrays can be
converted to Python scalars"). The persistent kernels need such loops (Triton pipelines only
``for`` loops, not ``while``), so interpreted engines make the conversion read the element.
Nothing changes for compiled kernels.
"""

from __future__ import annotations


def fix_loop_bounds() -> None:
    """Patch the interpreter's tensor ``__index__`` once per process (idempotent)."""
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "mgdl_fast_fixed", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched.mgdl_fast_fixed = True  # type: ignore[attr-defined]
    interpreter._patch_lang_tensor = patched
