"""Backend registry: which implementation serves an op, and why the others cannot.

A backend is a module exposing ``NAME``, ``unavailable_reason() -> str | None``,
``unsupported_reasons(op, x, params) -> list[str]``, ``AUTO_DEVICE_TYPES`` (the device types
``auto`` may pick it for; Triton's interpreter serves CPU tensors when asked explicitly, but
auto must not send CPU training there) and one function per op in ``OPS``.
Modules load lazily on first use, so importing mgdl_fast never imports Triton or the CUDA
extension. Resolution order: the explicit ``backend=`` argument, then ``MGDL_FAST_BACKEND``, then
``auto`` (the first of ``AUTO_ORDER`` that can serve the inputs).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from types import ModuleType

import torch

from .block import BlockParams
from .errors import BackendUnavailableError, InputError

OPS = ("block_fwd", "block_bwd", "grade_step", "adam_step", "gd_step")
BACKEND_MODULES = {
    "cuda": "mgdl_fast._cuda",
    "triton": "mgdl_fast._triton",
    "reference": "mgdl_fast.reference",
}
AUTO_ORDER = ("cuda", "triton", "reference")
ENV_VAR = "MGDL_FAST_BACKEND"

_log = logging.getLogger("mgdl_fast")
_modules: dict[str, ModuleType] = {}
_import_errors: dict[str, str] = {}
_logged_fallbacks: set[tuple[str, str]] = set()


def _load(name: str) -> ModuleType | None:
    if name in _modules:
        return _modules[name]
    if name in _import_errors:
        return None
    try:
        _modules[name] = importlib.import_module(BACKEND_MODULES[name])
    except ImportError as exc:
        _import_errors[name] = f"cannot import {BACKEND_MODULES[name]}: {exc}"
        return None
    return _modules[name]


def backend_names() -> tuple[str, ...]:
    return tuple(BACKEND_MODULES)


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run at all on this machine, or None when it can."""
    if name not in BACKEND_MODULES:
        raise InputError(
            f"unknown backend {name!r}; choose from {', '.join(BACKEND_MODULES)} or auto"
        )
    module = _load(name)
    if module is None:
        return _import_errors[name]
    return module.unavailable_reason()


def reasons(name: str, op: str, x: torch.Tensor | None, params: BlockParams | None) -> list[str]:
    """Every reason backend ``name`` cannot serve ``op`` on these inputs (empty: it can)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; ops are {OPS}")
    why = unavailable_reason(name)
    if why is not None:
        return [why]
    return list(_modules[name].unsupported_reasons(op, x, params))


def requested_backend(backend: str | None) -> str:
    """The backend name asked for: the argument, else ``$MGDL_FAST_BACKEND``, else 'auto'."""
    name = backend or os.environ.get(ENV_VAR) or "auto"
    if name != "auto" and name not in BACKEND_MODULES:
        raise InputError(
            f"unknown backend {name!r}; choose from {', '.join(BACKEND_MODULES)} or auto"
        )
    return name


def resolve(
    op: str,
    x: torch.Tensor | None = None,
    params: BlockParams | None = None,
    *,
    backend: str | None = None,
) -> tuple[str, Callable]:
    """The (backend name, function) that serves ``op`` on these inputs.

    An explicit backend that cannot serve the inputs raises BackendUnavailableError with every
    reason; ``auto`` falls back along ``AUTO_ORDER`` and logs each fallback once.
    """
    name = requested_backend(backend)
    if name != "auto":
        why = reasons(name, op, x, params)
        if why:
            raise BackendUnavailableError(f"backend {name!r} cannot run {op}: " + "; ".join(why))
        return name, getattr(_modules[name], op)
    device_type = _device_type(x, params)
    for candidate in AUTO_ORDER:
        why = reasons(candidate, op, x, params)
        module = _modules.get(candidate)
        if not why and device_type not in getattr(module, "AUTO_DEVICE_TYPES", ("cpu", "cuda")):
            why = [f"auto does not pick {candidate} for {device_type} tensors"]
        if not why:
            return candidate, getattr(_modules[candidate], op)
        if (candidate, op) not in _logged_fallbacks:
            _logged_fallbacks.add((candidate, op))
            _log.info("backend %s skipped for %s: %s", candidate, op, "; ".join(why))
    raise BackendUnavailableError(f"no backend can run {op}")


def _device_type(x: torch.Tensor | None, params: BlockParams | None) -> str:
    if x is not None:
        return x.device.type
    return params.flat.device.type if params is not None else "cpu"
