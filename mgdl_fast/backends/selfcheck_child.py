"""A kernel's first self-check on a device runs in a child process, so that a crash, a hang or
an illegal memory access (which poisons a CUDA context for the rest of its process) can only
take the child down; the user's process reads a verdict either way.

``run_isolated`` starts ``python -m mgdl_fast.backends.selfcheck_child`` (a fresh interpreter:
nothing of the caller's ``__main__`` runs again) with the request as JSON on stdin and the
caller's ``sys.path``; the child imports the backend class by module and name, runs
``selfcheck_compare.compare`` and prints the verdict on one marked line of stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import torch

from ..block import BlockShape
from .base import Backend, Options

MARKER = "mgdl_fast-self-check-verdict "
TIMEOUT_ENV = "MGDL_FAST_SELF_CHECK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0


def request(backend: Backend, shape: BlockShape, device, input_dtype, options: Options) -> dict:
    return {
        "module": type(backend).__module__,
        "cls": type(backend).__qualname__,
        "shape": [shape.in_dim, shape.width, shape.hidden_layers, shape.out_dim],
        "device": str(device),
        "input_dtype": str(input_dtype).removeprefix("torch."),
        "options": options.to_dict(),
    }


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _death(code: int, stderr: str) -> str:
    """One line on how the child ended without a verdict."""
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = f": {lines[-1][:200]}" if lines else ""
    return f"the self-check process {how} before giving a verdict{last}"


def run_isolated(req: dict) -> dict:
    """The child's verdict for ``req``; a failed verdict with the reason if it has none."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    timeout = _timeout()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", __name__],
            input=json.dumps(req),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    # A timeout (a cold compile on a busy machine) or a failed start says nothing about the
    # kernel: such a verdict is "transient", kept for this process only, never on disk.
    except subprocess.TimeoutExpired:
        reason = f"the self-check process did not finish in {timeout} s"
        return {"passed": False, "transient": True, "reason": reason}
    except OSError as exc:
        reason = f"cannot start the self-check process: {exc}"
        return {"passed": False, "transient": True, "reason": reason}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line.removeprefix(MARKER))
    return {"passed": False, "reason": _death(proc.returncode, proc.stderr)}


def _main() -> None:
    import importlib

    from .selfcheck_compare import compare

    req = json.loads(sys.stdin.read())
    backend = getattr(importlib.import_module(req["module"]), req["cls"])()
    verdict = compare(
        backend,
        BlockShape(*req["shape"]),
        torch.device(req["device"]),
        getattr(torch, req["input_dtype"]),
        Options(**req["options"]),
    )
    print(MARKER + json.dumps(verdict), flush=True)


if __name__ == "__main__":
    _main()
