"""The examples run: a custom front end (examples/custom_loop.py) trains cameraman with its own
loop on the public modules and ops (threaded loader, autocast, inference-mode evaluation, a
checkpoint) and reaches the trainer's test PSNR at the same setting."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage", reason="the example reads skimage's cameraman")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_loop.py"


@pytest.mark.slow
def test_a_custom_loop_reaches_the_trainers_psnr(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("custom_loop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    # Registered first: its dataclass looks its module up by name.
    monkeypatch.setitem(sys.modules, "custom_loop", example)
    spec.loader.exec_module(example)
    result = example.main(["--out", str(tmp_path)])
    assert (tmp_path / "custom.safetensors").is_file()
    assert result["reload_error"] == 0.0
    # The loop takes 4 minibatch steps per epoch where the trainer takes one full-batch step.
    assert result["custom_psnr"] >= result["trainer_psnr"] - 0.1, result
    assert result["trainer_psnr"] > 20.0
    assert "test PSNR: custom loop" in capsys.readouterr().out
