"""Issue 20 end to end: a refused fit keeps the user's files, ``--feature-store disk`` never
removes a user's ``features/``, a full disk at every write site is one line and the run then
resumes bit for bit, a run killed before its first state commit resumes, and every leftover
temporary file is ignored by ``predict``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mgdl_fast.io import atomic

from ..helpers import run_cli
from .test_runs import _fit_subprocess

TINY = ["--epochs", "20", "--grades", "2", "--width", "8", "--quiet"]


def _same(a, b):
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    np.testing.assert_array_equal(
        np.load(a / "reconstruction.npy"), np.load(b / "reconstruction.npy")
    )


@pytest.fixture
def full(tiny_png, tmp_path, capsys):
    out = tmp_path / "full"
    assert run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)[0] == 0
    return out


def test_a_refused_fit_keeps_a_users_temporary_looking_files(full, tiny_png, tmp_path, capsys):
    copy = tmp_path / "d"
    shutil.copytree(full, copy)
    (copy / ".notes.tmp.txt").write_text("x")
    code, _, err = run_cli(["fit", tiny_png, "--out", copy, *TINY], capsys)
    assert code == 2 and "already holds a run" in err and err.count("\n") == 1
    assert (copy / ".notes.tmp.txt").read_text() == "x"


def test_user_files_survive_overwrite_and_disk_features(full, tiny_png, tmp_path, capsys):
    (full / "notes.txt").write_text("mine")
    (tmp_path / "beside.txt").write_text("mine too")
    code, _, err = run_cli(["fit", tiny_png, "--out", full, "--overwrite", "--feature-store",
                            "disk", *TINY], capsys)  # fmt: skip
    assert code == 0, err
    assert (full / "notes.txt").read_text() == "mine"
    assert (tmp_path / "beside.txt").read_text() == "mine too"
    assert not (full / "features").exists()  # the run's scratch folder, removed when done
    (full / "features").mkdir()
    (full / "features" / "user.dat").write_text("data")
    code, _, err = run_cli(["fit", "--out", full, "--resume", "--grades", "3", "--feature-store",
                            "disk", "--quiet"], capsys)  # fmt: skip
    assert code == 2 and "features was not written by mgdl-fast and is kept" in err
    assert (full / "features" / "user.dat").read_text() == "data"


# Every file a regression run writes, and where: the record, the lock, the manifest, the log,
# a grade's outputs, the state, the curves, the features on disk.
SITES = [".mgdl_fast_run", ".lock", "manifest.json", "progress.jsonl", "grade_1.png",
         "reconstruction.npy", "model.safetensors", "model.json", "metrics.json",
         "state-000001.safetensors", "curves.png", "train.features"]  # fmt: skip


@pytest.mark.slow
def test_a_full_disk_at_every_write_site_is_one_line_and_resumes(
    full, tiny_png, tmp_path, capsys, monkeypatch
):
    for site in SITES:
        out = tmp_path / site.strip(".")
        monkeypatch.setenv(atomic.FULL_ENV, site)
        atomic._counts.clear()
        code, _, err = run_cli(["fit", tiny_png, "--out", out, "--feature-store", "disk", *TINY],
                               capsys)  # fmt: skip
        last = err.splitlines()[-1]
        assert code == 2 and err.count("error") == 1 and "Traceback" not in err, (site, err)
        assert last.startswith(f"mgdl-fast: error: cannot write {out}") and site in last, err
        monkeypatch.delenv(atomic.FULL_ENV)
        if (out / "manifest.json").is_file():
            code, _, err = run_cli(["fit", "--out", out, "--resume", "--quiet"], capsys)
        else:  # failed before the run began: nothing is left, and it starts anew
            assert not out.exists(), (site, list(out.iterdir()))
            code, _, err = run_cli(["fit", tiny_png, "--out", out, "--feature-store", "disk",
                                    *TINY], capsys)  # fmt: skip
        assert code == 0, (site, err)
        _same(full, out)
        assert not list(out.glob(".*.tmp*")) and not (out / "features").exists()


def test_killed_between_the_first_model_and_its_manifest_resumes(full, tiny_png, tmp_path, capsys):
    out = tmp_path / "cut"
    killed = _fit_subprocess(["fit", tiny_png, "--out", out, *TINY],
                             {atomic.CRASH_ENV: "manifest.json:2"})  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-500:]
    assert (out / "model.json").is_file()
    assert json.loads((out / "manifest.json").read_text())["state"] is None
    code, _, err = run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)
    assert code == 2 and "--resume" in err
    code, _, err = run_cli(["predict", out, "--out", tmp_path / "r.png"], capsys)
    assert code == 2 and err.count("\n") == 1
    code, _, err = run_cli(["fit", "--out", out, "--resume", "--quiet"], capsys)
    assert code == 0 and "starting from grade 1" in err
    _same(full, out)


def test_leftover_temporaries_are_ignored_by_predict_and_cleaned_only_when_recorded(
    full, tiny_png, tmp_path, capsys
):
    out = tmp_path / "cut"
    killed = _fit_subprocess(["fit", tiny_png, "--out", out, *TINY],
                             {atomic.CRASH_ENV: "model.safetensors:2"})  # fmt: skip
    assert killed.returncode == -9 and (out / ".model.tmp.safetensors").is_file()
    (out / ".user.tmp.safetensors").write_bytes(b"the user's")
    code, _, err = run_cli(["predict", out, "--out", tmp_path / "r.png"], capsys)
    assert code == 0, err  # grade 1's committed model; neither temporary file is read
    code, _, err = run_cli(["fit", "--out", out, "--resume", "--quiet"], capsys)
    assert code == 0, err
    _same(full, out)
    assert not (out / ".model.tmp.safetensors").exists()  # recorded: cleaned
    assert (out / ".user.tmp.safetensors").read_bytes() == b"the user's"  # not: kept


def test_run_files_get_the_umask_mode(full):
    for name in ("model.safetensors", "state-000002.safetensors", "manifest.json", "grade_1.png"):
        assert (full / name).stat().st_mode & 0o777 == atomic.file_mode(), name


def test_a_constant_image_gives_strict_json(tmp_path, capsys):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "flat.png", np.full((8, 8), 128, np.uint8))
    out = tmp_path / "flat"
    run_cli(["fit", tmp_path / "flat.png", "--out", out, *TINY], capsys)
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert metrics["non_finite"]
    for line in (out / "progress.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in progress.jsonl"))
