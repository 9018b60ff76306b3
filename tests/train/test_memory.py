"""The preflight memory model (issue 15): its estimate against the measured peak RSS of real
fits, the refusal above --max-memory and the settings it names, and auto streaming."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage import data, transform

from mgdl_fast.block import BlockShape
from mgdl_fast.run import plan as run_plan
from mgdl_fast.tasks import TASKS
from mgdl_fast.train.memory import Problem, estimate, parse_bytes, suggestions

from ..helpers import run_cli

# Runs the CLI in a fresh process and prints its own peak RSS (KiB) last. VmHWM, not
# getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child of a large
# pytest process would report the parent's size; VmHWM belongs to the new address space.
MEASURE = (
    "import re, sys; from mgdl_fast.cli import main; code = main(sys.argv[1:]); "
    "status = open('/proc/self/status').read(); "
    "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)); sys.exit(code)"
)


def _camera(path, side: int):
    pixels = transform.resize(data.camera(), (side, side), preserve_range=True)
    np.save(path, np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return path


def _measured_fit(tmp_path, side: int, *options: str) -> tuple[int, int]:
    """(estimated, measured) peak bytes of a 2-grade, 2-epoch fit of a side^2 image."""
    image = _camera(tmp_path / f"cam{side}.npy", side)
    out = tmp_path / f"run{side}{''.join(options)}"
    args = ["fit", str(image), "--grades", "2", "--epochs", "2", "--out", str(out), "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *args, *options],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    measured = int(done.stdout.strip().splitlines()[-1]) * 1024
    memory = json.loads((out / "metrics.json").read_text())["config"]["memory"]
    return memory["estimate_bytes"], measured


@pytest.mark.parametrize(
    ("side", "options"),
    [(512, ()), (1024, ()), (1024, ("--stream", "on", "--feature-store", "disk"))],
    ids=["512-memory", "1024-memory", "1024-streamed-disk"],
)
def test_estimate_is_within_20_percent_of_measured_peak_rss(tmp_path, side, options):
    estimated, measured = _measured_fit(tmp_path, side, *options)
    assert abs(estimated - measured) <= 0.2 * measured, (estimated, measured)


@pytest.fixture
def fresh_baseline(monkeypatch):
    """In-process CLI runs see the test process's own size as their baseline; pin it to a
    fresh process's (about 260 MB) so the limits below mean the same in any test order."""
    monkeypatch.setattr(run_plan, "baseline_bytes", lambda: 260 << 20)


def test_a_run_above_max_memory_is_refused_naming_what_fits(tmp_path, capsys, fresh_baseline):
    image = _camera(tmp_path / "cam.npy", 1024)
    out = tmp_path / "run"
    args = ["fit", image, "--out", out, "--max-memory", "600M", "--stream", "off",
            "--feature-store", "memory"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code != 0
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert "above --max-memory 600.00 MB" in lines[0]
    assert "--stream on --feature-store disk" in lines[0]
    assert not (out / "metrics.json").exists()


def test_auto_streams_when_only_streaming_fits(tmp_path, capsys, fresh_baseline):
    image = _camera(tmp_path / "cam.npy", 1024)
    out = tmp_path / "run"
    args = ["fit", image, "--out", out, "--epochs", "1", "--grades", "1", "--max-memory", "900M"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["train"]["stream"] is True
    assert config["memory"]["estimate_bytes"] <= config["memory"]["limit_bytes"]
    assert "estimated peak memory" not in err or "streamed" in err


def _problem(**overrides) -> Problem:
    settings = dict(
        height=8192, width=8192, channels=1, terms=TASKS["regression"].memory,
        shapes=(BlockShape(2, 128, 2, 1), BlockShape(128, 128, 2, 1)), cache_bytes=4,
        precision="fp32", backend="torch", device=torch.device("cpu"), stream=False,
        feature_store="memory", chunk_size=1 << 16, load_image=True,
    )  # fmt: skip
    settings.update(overrides)
    return Problem(**settings)


def test_features_dominate_and_shrink_with_bf16_disk_and_ranks():
    base = estimate(_problem(), 0)
    rows = 8192 * 8192 * 3 // 2
    assert base.parts["features"] == rows * 128 * 4 + 8192 * 8192 * 128 * 4
    assert estimate(_problem(cache_bytes=2), 0).parts["features"] * 2 == base.parts["features"]
    assert estimate(_problem(stream=True, feature_store="disk"), 0).total < base.total / 10
    halves = estimate(_problem(ranks=2), 0)
    assert halves.parts["features"] == pytest.approx(base.parts["features"] / 2, rel=1e-6)


def test_suggestions_name_only_settings_that_fit():
    problem = _problem(height=4096, width=4096)
    limit = estimate(problem, 0).total // 3
    found = suggestions(problem, 0, limit)
    assert "--stream on --feature-store disk" in found
    assert "--cache-dtype bf16" not in found  # halves the features only: not enough
    for option in found:
        assert option.startswith(("--", "torchrun"))
    crop = [f for f in found if f.startswith("--crop")]
    side = int(crop[0].split()[1])
    assert estimate(_problem(height=side, width=side), 0).total <= limit


@pytest.mark.parametrize(
    ("text", "expected"), [("6G", 6 << 30), ("512M", 512 << 20), ("2.5GiB", int(2.5 * (1 << 30)))]
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        parse_bytes(text)
