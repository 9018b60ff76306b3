"""A damaged manifest is one line naming the file and the field: a configuration without the
sections a resume reads, and a state name the run did not write (``state-NNNNNN.safetensors``)."""

from __future__ import annotations

import json
import shutil

import pytest

from ..helpers import run_cli, tiny_pattern

TINY = ["--epochs", "20", "--grades", "2", "--width", "8", "--quiet", "--checkpoint-every", "7"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-grade run, made once."""
    import imageio.v3 as iio

    from mgdl_fast.cli import main

    root = tmp_path_factory.mktemp("finished")
    iio.imwrite(root / "tiny.png", tiny_pattern())
    out = root / "run"
    assert main([str(a) for a in ["fit", root / "tiny.png", "--out", out, *TINY]]) == 0
    return out


def _copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, json.loads((copy / "manifest.json").read_text())


CONFIG_CASES = {
    "no image": (lambda c: c.pop("image"), "field config.image is missing"),
    "no train": (lambda c: c.pop("train"), "field config.train is missing"),
    "model a list": (lambda c: c.update(model=[]), "field config.model must be an object"),
    "no task": (lambda c: c.pop("task"), "field config.task is missing"),
    "preset null": (lambda c: c.update(preset=None), "field config.preset must be a string"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_a_manifest_config_without_its_sections_is_one_line(finished, tmp_path, capsys, case):
    run, manifest = _copy(finished, tmp_path)
    edit, field = CONFIG_CASES[case]
    manifest["files"].pop(manifest["state"])
    manifest["state"] = None
    config = json.loads((run / "metrics.json").read_text())["config"]
    edit(config)
    manifest["config"] = config
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["fit", "--out", run, "--resume", "--grades", "3", "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and field in err, err
    assert "manifest.json" in err


@pytest.mark.parametrize("name", ["state.safetensors", "mystate-x.safetensors", "state-1.json"])
def test_a_state_name_the_run_did_not_write_is_one_line(finished, tmp_path, capsys, name):
    run, manifest = _copy(finished, tmp_path)
    (run / manifest["state"]).rename(run / name)
    manifest["files"][name] = manifest["files"].pop(manifest["state"])
    manifest["state"] = name
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["fit", "--out", run, "--resume", "--grades", "3", "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and "field state" in err, err
    assert "manifest.json" in err and name in err
