"""``mgdl-fast fit`` on two ranks (issue 15): rank 0 alone touches the run directory and writes
a complete run; a run killed on one rank count resumes on another (``torchrun`` 2 -> 1 process
and 1 process -> ``torchrun`` 2), equal to the uninterrupted run (and on the same count, bit for
bit); killing rank 0 ends rank 1.

The runs use GD on a 16 x 16 image (train split 64 rows: two equal shards), where two ranks and
one process agree to 1e-6 in the parameters (tests/distributed/test_grades.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mgdl_fast.cli import main
from mgdl_fast.io import atomic

from ..helpers import run_cli
from .launch import RANK_LIMIT_S, free_port, run_ranks

TINY = ["--epochs", "21", "--grades", "2", "--width", "16", "--optimizer", "gd", "--lr", "0.2",
        "--checkpoint-every", "5", "--quiet"]  # fmt: skip
DENOISE = ["--task", "denoise", "--layers", "2", "--record-every", "5", "--optimizer", "gd",
           "--lr", "1e-3"]  # fmt: skip
# Audit events that name a path: opening, listing, creating, renaming and removing files.
PATH_EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.remove",
               "os.rmdir", "os.truncate", "shutil.rmtree"}  # fmt: skip


def audited_fit(rank: int, args: list[str], out: str, report: str) -> None:
    """A rank of ``mgdl-fast fit ARGS``; ranks other than 0 record every file operation under
    ``out`` (a Python audit hook sees each open, listing, rename and removal)."""
    touched: list[str] = []

    def hook(event, event_args):
        if event in PATH_EVENTS:
            for arg in event_args:
                if isinstance(arg, (str, os.PathLike)) and os.fspath(arg).startswith(out):
                    touched.append(f"{event} {os.fspath(arg)}")

    if rank != 0:
        sys.addaudithook(hook)
    code = main(args)
    Path(report, f"rank{rank}.json").write_text(json.dumps({"code": code, "touched": touched}))


def torchrun(nproc: int, args: list, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N -m mgdl_fast ARGS`` on a free localhost port."""
    script = Path(sys.executable).with_name("torchrun")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    where = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    cmd = [*launcher, "--nnodes", "1", "--nproc-per-node", str(nproc), *where, "-m", "mgdl_fast"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MGDL_FAST_DIST_TIMEOUT_S": "60"}
    env |= env_extra or {}
    return subprocess.run(
        [*cmd, *map(str, args)], env=env, capture_output=True, text=True, timeout=RANK_LIMIT_S
    )


def _one_process(args: list, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "mgdl_fast", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RANK_LIMIT_S)


def _assert_same_run(a: Path, b: Path, atol: float = 1e-6) -> None:
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert set(ta) == set(tb)
    assert {name for name in ta if name.startswith("grade")} == {"grade1", "grade2"}
    for name in ta:
        torch.testing.assert_close(ta[name], tb[name], atol=atol, rtol=0)
    ra, rb = np.load(a / "reconstruction.npy"), np.load(b / "reconstruction.npy")
    assert ra.shape == rb.shape == (16, 16, 1)
    np.testing.assert_allclose(ra, rb, atol=1e-5, rtol=0)


@pytest.fixture
def single(tiny_png, tmp_path, capsys):
    """The uninterrupted run in one process (one thread, like every rank)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "single"
        assert run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)[0] == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_rank_0_alone_touches_the_run_and_writes_it_whole(tiny_png, tmp_path, capsys):
    args = ["fit", str(tiny_png), *TINY, *DENOISE]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli([*args, "--out", tmp_path / "single"], capsys)[0] == 0
    finally:
        torch.set_num_threads(threads)
    out, report = tmp_path / "ranks", tmp_path / "report"
    report.mkdir()
    assert run_ranks(audited_fit, 2, [*args, "--out", str(out)], str(out), str(report)) == [0, 0]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["code"] for r in ranks] == [0, 0]
    assert ranks[1]["touched"] == []
    files = {p.name for p in out.iterdir()}
    assert files == {p.name for p in (tmp_path / "single").iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert metrics["environment"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    _assert_same_run(tmp_path / "single", out)
    # The TV variable u [C, 2H, W] is whole in rank 0's state (every rank holds all of it).
    state = json.loads((out / "manifest.json").read_text())["state"]
    u = load_file(str(out / state))["objective.u"]
    single_state = json.loads((tmp_path / "single" / "manifest.json").read_text())["state"]
    single_u = load_file(str(tmp_path / "single" / single_state))["objective.u"]
    assert u.shape == (1, 32, 16)
    torch.testing.assert_close(u, single_u, atol=1e-5, rtol=0)


# The 7th state write: grade 2's second checkpoint (grade 1 writes 4 and one at its end);
# the run resumes from the first, after epoch 4 of grade 2.
CRASH = {atomic.CRASH_ENV: "state-000007.safetensors"}


def test_two_ranks_killed_resume_on_one_process_or_two(tiny_png, tmp_path, single):
    out = tmp_path / "cut"
    killed = torchrun(2, ["fit", tiny_png, "--out", out, *TINY], CRASH)
    assert killed.returncode != 0, killed.stderr[-2000:]
    assert list(out.glob(".*.tmp*")), "rank 0 was not killed inside a write"
    again = tmp_path / "cut-again"
    shutil.copytree(out, again)
    resumed = _one_process(["fit", "--out", out, "--resume", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and "in grade 2 after epoch 4" in resumed.stderr
    _assert_same_run(single, out)
    # On the same number of ranks the resumed run is the uninterrupted one, bit for bit.
    assert torchrun(2, ["fit", "--out", again, "--resume", "--quiet"]).returncode == 0
    full = tmp_path / "full"
    assert torchrun(2, ["fit", tiny_png, "--out", full, *TINY]).returncode == 0
    _assert_same_run(full, again, atol=0)
    np.testing.assert_array_equal(np.load(full / "reconstruction.npy"),
                                  np.load(again / "reconstruction.npy"))  # fmt: skip


def test_one_process_killed_resumes_on_two_ranks(tiny_png, tmp_path, single):
    out = tmp_path / "cut"
    killed = _one_process(["fit", tiny_png, "--out", out, *TINY], CRASH)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = torchrun(2, ["fit", "--out", out, "--resume", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stderr.count("resuming") == 1
    _assert_same_run(single, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["distributed"]["world_size"] == 2
