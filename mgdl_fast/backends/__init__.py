"""Backend registry: which backend serves a grade, why the others cannot, and ``bind``.

Backends: ``torch`` (plain PyTorch on any device: the oracle and the fallback; ``reference`` is
its former name and still accepted), ``triton`` and ``cuda`` (fused kernels on CUDA devices).
Each is a ``base.Backend`` subclass loaded on first use, so importing mgdl_fast never imports
Triton or the CUDA extension.

Choice order: the explicit ``backend=`` (or ``--backend``), then ``$MGDL_FAST_BACKEND``, then
``auto``: the first of ``AUTO_ORDER`` that can serve the request on that device type. An
explicit request that cannot be served raises ``BackendUnavailableError`` with every reason;
auto logs each fallback once. Before auto first hands a (device, shape class, dtype,
precision) to a kernel backend, the kernels run against the torch backend in a child process
(selfcheck.py; the verdict is kept on disk); a kernel that disagrees, drops a NaN, raises or
crashes is skipped with one logged line, as is one whose bind raises.
"""

from __future__ import annotations

import importlib
import logging
import os

# Aliased: importing the subpackage mgdl_fast.backends.torch binds the name "torch" in this
# package's namespace, which would shadow the library.
import torch as _torch

from ..block import BlockShape
from ..errors import BackendUnavailableError, InputError
from . import selfcheck
from .base import Backend, Options, shape_name
from .engine import Engine

__all__ = [
    "AUTO_ORDER",
    "Backend",
    "Engine",
    "Options",
    "backend_names",
    "bind",
    "canonical_name",
    "get_backend",
    "reasons",
    "requested_backend",
    "unavailable_reason",
]

BACKEND_CLASSES = {
    "cuda": ("mgdl_fast.backends.cuda", "CudaBackend"),
    "triton": ("mgdl_fast.backends.triton", "TritonBackend"),
    "torch": ("mgdl_fast.backends.torch", "TorchBackend"),
}
ALIASES = {"reference": "torch"}
AUTO_ORDER = ("cuda", "triton", "torch")
ENV_VAR = "MGDL_FAST_BACKEND"

_log = logging.getLogger("mgdl_fast")
_backends: dict[str, Backend] = {}
_import_errors: dict[str, str] = {}
_logged: set[tuple[str, str]] = set()


def backend_names() -> tuple[str, ...]:
    return tuple(BACKEND_CLASSES)


def canonical_name(name: str) -> str:
    """``name`` with aliases resolved; InputError for an unknown backend."""
    name = ALIASES.get(name, name)
    if name != "auto" and name not in BACKEND_CLASSES:
        known = ", ".join([*BACKEND_CLASSES, *ALIASES])
        raise InputError(f"unknown backend {name!r}; choose from {known} or auto")
    return name


def requested_backend(backend: str | None) -> str:
    """The backend asked for: the argument, else ``$MGDL_FAST_BACKEND``, else 'auto'."""
    return canonical_name(backend or os.environ.get(ENV_VAR) or "auto")


def get_backend(name: str) -> Backend | None:
    """The backend object, imported on first use; None when its module cannot be imported."""
    name = canonical_name(name)
    if name not in _backends and name not in _import_errors:
        module, cls = BACKEND_CLASSES[name]
        try:
            _backends[name] = getattr(importlib.import_module(module), cls)()
        except ImportError as exc:
            _import_errors[name] = f"cannot import {module}: {exc}"
    return _backends.get(name)


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run at all on this machine, or None when it can."""
    backend = get_backend(name)
    return _import_errors[canonical_name(name)] if backend is None else backend.unavailable_reason()


def reasons(
    name: str,
    shape: BlockShape,
    device: _torch.device | str,
    input_dtype: _torch.dtype = _torch.float32,
    options: Options | None = None,
) -> list[str]:
    """Every reason backend ``name`` cannot serve this grade (empty: it can)."""
    why = unavailable_reason(name)
    if why is not None:
        return [why]
    backend = get_backend(name)
    assert backend is not None
    return backend.not_supported_reasons(
        shape, _torch.device(device), input_dtype, options or Options.from_env()
    )


def bind(
    shape: BlockShape,
    *,
    device: _torch.device | str,
    rows: int,
    input_dtype: _torch.dtype = _torch.float32,
    options: Options | None = None,
    backend: str | None = None,
) -> Engine:
    """The engine of one grade: ``shape`` on ``device``, ``input_dtype`` inputs, at most
    ``rows`` rows per call, computing with ``options`` (default: from the environment).

    Raises BackendUnavailableError (with every reason) when the requested backend, or for
    ``auto`` every backend, cannot serve it.
    """
    if not isinstance(rows, int) or rows < 1:
        raise InputError(f"rows must be an integer >= 1, got {rows!r}")
    device = _torch.device(device)
    options = options or Options.from_env()
    name = requested_backend(backend)
    if name != "auto":
        why = reasons(name, shape, device, input_dtype, options)
        if why:
            raise BackendUnavailableError(
                f"backend {name!r} cannot serve a {shape_name(shape)} grade on {device}: "
                + "; ".join(why),
                why,
            )
        return _backends[name].bind(shape, device, input_dtype, rows, options)
    return _bind_auto(shape, device, input_dtype, rows, options)


def _bind_auto(shape, device, input_dtype, rows, options) -> Engine:
    skipped: dict[str, list[str]] = {}
    checks: dict[str, dict] = {}
    for candidate in AUTO_ORDER:
        why = reasons(candidate, shape, device, input_dtype, options)
        backend = _backends.get(candidate)
        if not why and backend is not None:
            why, engine = _try_candidate(backend, shape, device, input_dtype, rows, options, checks)
            if engine is not None:
                # The torch backend's bind may have set its own verdict (bf16 on CUDA): keep it.
                engine.self_check = {**(engine.self_check or {}), **checks} or None
                engine.auto_skipped = skipped
                return engine
        skipped[candidate] = why
        key = (candidate, "; ".join(why))
        if key not in _logged:
            _logged.add(key)
            failed = candidate in checks and not checks[candidate]["passed"]
            (_log.warning if failed else _log.info)("backend %s skipped: %s", *key)
    every = [f"{n}: {'; '.join(w)}" for n, w in skipped.items()]
    raise BackendUnavailableError(
        f"no backend can serve a {shape_name(shape)} grade on {device}: " + " | ".join(every),
        every,
    )


def _try_candidate(backend, shape, device, input_dtype, rows, options, checks):
    """(reasons auto passes ``backend`` over, or its engine): the device types auto picks it
    for, a kernel backend's self-check, and any exception its bind raises."""
    if device.type not in backend.capabilities.auto_device_types:
        return [f"auto does not pick {backend.name} for {device.type} tensors"], None
    if backend.name != "torch":
        check = selfcheck.validate(backend, shape, device, input_dtype, options)
        if check is not None:
            checks[backend.name] = check
            if not check["passed"]:
                return [selfcheck.failure_line(check)], None
    try:
        return [], backend.bind(shape, device, input_dtype, rows, options)
    except Exception as exc:  # an unproven kernel backend must never stop a fit: fall back
        if backend.name == "torch":
            raise
        return [f"bind raised {type(exc).__name__}: {str(exc)[:300]}"], None
