"""Issue 20: damaged run files are one line naming the file and the field; predict never
removes what it did not write and refuses non-finite models; collapse is divergence; counts,
special files and lying image headers are refused before anything is allocated."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..helpers import run_cli, tiny_pattern

TINY = ["--epochs", "20", "--grades", "2", "--width", "8", "--quiet", "--checkpoint-every", "7"]


@pytest.fixture(scope="module")
def midway(tmp_path_factory):
    """A run interrupted in grade 2 (its state holds a grade in progress), made once."""
    import imageio.v3 as iio

    from mgdl_fast.cli import main

    root = tmp_path_factory.mktemp("midway")
    iio.imwrite(root / "tiny.png", tiny_pattern())
    out = root / "run"
    args = ["fit", root / "tiny.png", "--out", out, *TINY, "--grades", "3"]
    assert main([str(a) for a in args]) == 0
    return out


def _state(run):
    manifest = json.loads((run / "manifest.json").read_text())
    return run / manifest["state"]


def _rewrite_state(run, edit_meta=None, edit_tensors=None):
    """Change the run's current state and re-list it in the manifest (a damaged file that
    still matches its checksum: the schema must catch it)."""
    import hashlib

    path = _state(run)
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["state"])
    tensors = load_file(str(path))
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={"state": json.dumps(meta)})
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["files"][path.name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (run / "manifest.json").write_text(json.dumps(manifest))


def _with_current(meta):
    meta["current"] = {"grade": 4, "epoch": 5, "stop_rule": {}, "series": {},
                       "elapsed_s": 1.0, "lr": 1e-3, "retries": []}  # fmt: skip


CASES = {
    "no grades": (lambda m: m.pop("grades"), None, "field grades is missing"),
    "no config": (lambda m: m.pop("config"), None, "field config is missing"),
    "no records": (lambda m: m.pop("records"), None, "field records is missing"),
    "no current": (lambda m: m.pop("current"), None, "field current is missing"),
    "grades null": (lambda m: m.update(grades=None), None, "field grades must be a list"),
    "scale nan": (lambda m: m["grades"][0].update(scale=float("nan")), None, "grades[0].scale"),
    "epoch huge": (
        lambda m: (_with_current(m), m["current"].update(epoch=10**9)),
        None,
        "current.epoch",
    ),  # fmt: skip
    "epoch -5": (
        lambda m: (_with_current(m), m["current"].update(epoch=-5)),
        None,
        "current.epoch",
    ),  # fmt: skip
    "no params": (_with_current, None, "current.params"),
    "epochs a string": (
        lambda m: (_with_current(m), m["config"]["train"].update(epochs="10")),
        None,
        "config.train.epochs",
    ),  # fmt: skip
    "epochs empty": (
        lambda m: (_with_current(m), m["config"]["train"].update(epochs=[])),
        None,
        "config.train.epochs",
    ),  # fmt: skip
    "optimizer unknown": (
        lambda m: (_with_current(m), m["config"]["train"].update(optimizer="sgd")),
        lambda t: t.update({"current.params": torch.zeros(8 * 8 + 8 + 8 * 8 + 8 + 8 + 1)}),
        "config.train.optimizer",
    ),  # fmt: skip
    "wrong rng": (
        None,
        lambda t: t.update({"rng.torch": torch.zeros(3, dtype=torch.uint8)}),
        "rng.torch",
    ),  # fmt: skip
    "wrong grade size": (None, lambda t: t.update(grade1=torch.zeros(3)), "grade 1 tensor"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_state_is_one_line_naming_the_field(midway, tmp_path, capsys, case):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(midway, run)
    edit_meta, edit_tensors, field = CASES[case]
    _rewrite_state(run, edit_meta, edit_tensors)
    code, _, err = run_cli(["fit", "--out", run, "--resume", "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and field in err, err
    assert _state(run).name in err


def test_a_missing_adam_moment_is_refused(midway, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(midway, run)

    def add_current(tensors):
        tensors["current.params"] = torch.zeros(8 * 8 + 8 + 8 * 8 + 8 + 8 + 1)
        tensors["current.optimizer.step"] = torch.zeros((), dtype=torch.float64)
        tensors["current.optimizer.exp_avg"] = torch.zeros_like(tensors["current.params"])

    _rewrite_state(run, _with_current, add_current)
    code, _, err = run_cli(["fit", "--out", run, "--resume", "--quiet"], capsys)
    assert code == 2 and "current.optimizer.exp_avg_sq" in err, err


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m.update(grades=None), "field grades must be a list"),
        (lambda m: m["grades"][0].update(scale=float("inf")), "grades[0].scale"),
        (lambda m: m["grades"][1].pop("width"), "grades[1].width is missing"),
    ],
)
def test_a_damaged_model_json_is_one_line(midway, tmp_path, capsys, edit, field):
    folder = tmp_path / "m"
    folder.mkdir()
    meta = json.loads((midway / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    (folder / "model.safetensors").write_bytes((midway / "model.safetensors").read_bytes())
    code, _, err = run_cli(["predict", folder / "model.json", "--out", tmp_path / "r.png"],
                           capsys)  # fmt: skip
    assert code == 2 and field in err and err.count("\n") == 1, err


def test_predict_refuses_overflowing_weights(midway, tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    tensors = load_file(str(midway / "model.safetensors"))
    tensors["grade2"] = torch.full_like(tensors["grade2"], 1e30)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "model.json").write_text((midway / "model.json").read_text())
    out = tmp_path / "r.npy"
    code, _, err = run_cli(["predict", folder, "--out", out], capsys)
    assert code == 2 and "NaN or infinite" in err and not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_predict_never_removes_an_existing_output(midway, tmp_path, capsys):
    store = tmp_path / "existing.zarr"
    (store / "sub").mkdir(parents=True)
    (store / "sub" / "user_data.txt").write_text("keep")
    png = tmp_path / "r.png"
    png.write_text("mine")
    for out in (store, png):
        code, _, err = run_cli(["predict", midway, "--out", out], capsys)
        assert code == 2 and "exists; pass --overwrite" in err
    code, _, err = run_cli(["predict", midway, "--out", store, "--overwrite"], capsys)
    assert code == 2 and "is not a store mgdl-fast rendered" in err
    assert (store / "sub" / "user_data.txt").read_text() == "keep"
    (tmp_path / "link.zarr").symlink_to(store)
    code, _, err = run_cli(["predict", midway, "--out", tmp_path / "link.zarr", "--overwrite"],
                           capsys)  # fmt: skip
    assert code == 2 and "symbolic link" in err and err.count("\n") == 1
    ours = tmp_path / "ours.zarr"
    assert run_cli(["predict", midway, "--out", ours, "--quiet"], capsys)[0] == 0
    assert run_cli(["predict", midway, "--out", ours, "--overwrite", "--quiet"], capsys)[0] == 0
    code, _, err = run_cli(["predict", midway, "--out", png, "--overwrite", "--quiet"], capsys)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--size", "100000000000000000000", "5"], "--size must be 1..1048576"),
        (["--size", "100000", "100000", "--out", "huge.png"], "PNG needs"),
        (["--out", "/proc/x.npy"], "cannot write /proc/x.npy"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_bad_predict_requests_are_one_line(midway, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["predict", midway, "--quiet", *extra], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_collapse_is_divergence_and_retry_retries_it(tiny_png, tmp_path, capsys, caplog):
    args = ["fit", tiny_png, "--lr", "1e3", *TINY]
    code, _, err = run_cli([*args, "--out", tmp_path / "a"], capsys)
    assert code == 1 and "collapsed" in err
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "collapsed" in metrics["diverged"]
    code, _, err = run_cli([*args, "--out", tmp_path / "b", "--on-diverge", "retry"], capsys)
    assert code == 1 and "collapsed" in err
    assert sum("retrying grade 1" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--grades", "99999999999999999999"], "--grades must be at most 64"),
        (["--layers", "1000000"], "--layers must be at most 64"),
        (["--width", str(10**20)], "--width must be at most"),
        (["--frequencies", str(10**20)], "--frequencies must be at most"),
        (["--task", "denoise", "--noise-seed", "-1"], "--noise-seed must be an integer"),
        (["--task", "denoise", "--noise-seed", str(10**20)], "--noise-seed must be an integer"),
        (["--task", "deblur", "--blur", "1e6"], "--blur must be at most 100"),
        (["--max-memory", "inf"], "--max-memory must be a finite size"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_huge_counts_are_one_line(tiny_png, tmp_path, capsys, extra, message):
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", "--quiet", *extra], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_fifo_and_lying_tiffs_are_refused(tmp_path, capsys):
    import tifffile

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    tifffile.imwrite(tmp_path / "ok.tif", np.random.rand(64, 64).astype(np.float32))
    data = (tmp_path / "ok.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with tifffile.TiffFile(tmp_path / "ok.tif") as tif:
        offset = tif.pages[0].tags["ImageWidth"].valueoffset
    lying = bytearray(data)
    lying[offset : offset + 4] = (2**31 - 1).to_bytes(4, "little")
    (tmp_path / "lying.tif").write_bytes(bytes(lying))
    for name, message in (("pipe.png", "not a regular file"), ("cut.tif", "cannot read"),
                          ("lying.tif", "at most 1048576 pixels a side")):  # fmt: skip
        code, _, err = run_cli(["fit", tmp_path / name, "--out", tmp_path / "o", "--quiet"],
                               capsys)  # fmt: skip
        assert code == 2 and message in err and err.count("\n") == 1, (name, err)
        assert not (tmp_path / "o").exists()


def test_cpu_0_is_the_cpu(tiny_png, tmp_path, capsys):
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", *TINY, "--device", "cpu:0"],
                           capsys)  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize("name", ["r.png", "r.npy", "r.tif", "r.zarr"])
def test_predict_to_a_full_disk_is_one_line_and_leaves_nothing(
    midway, tmp_path, capsys, monkeypatch, name
):
    from mgdl_fast.io import atomic

    monkeypatch.setenv(atomic.FULL_ENV, name)
    atomic._counts.clear()
    code, _, err = run_cli(["predict", midway, "--out", tmp_path / name, "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and f"cannot write {tmp_path / name}" in err, err
    assert os.listdir(tmp_path) == []
