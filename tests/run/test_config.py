"""One run description: run.toml reruns a run to the same metrics, a TOML file and options
give the same run, bad keys and values are one line naming the key, ``fit --help`` is grouped
as the description, and the Python API takes the same object."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

import mgdl_fast as mf
from mgdl_fast.cli import build_parser
from mgdl_fast.cli.options import flag_of
from mgdl_fast.errors import InputError
from mgdl_fast.run.config import SECTIONS, RunConfig, read_toml

from ..helpers import run_cli

TINY = ["--epochs", "20", "--grades", "2", "--width", "16", "--quiet", "--device", "cpu"]


def grades(run_dir) -> list[dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return [{k: g[k] for k in ("epochs_run", "final", "stop_reason")} for g in metrics["grades"]]


def test_run_toml_reruns_the_run_to_the_same_metrics(tiny_png, tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    assert run_cli(["fit", tiny_png, "--out", first, "--seed", "3", *TINY], capsys)[0] == 0
    described = read_toml(str(first / "run.toml"))
    assert described["model"]["width"] == 16 and described["training"]["seed"] == 3
    assert described["input"]["image"] == str(tiny_png)
    code, _, err = run_cli(["fit", "--config", first / "run.toml", "--out", again], capsys)
    assert code == 0, err
    assert grades(again) == grades(first)
    assert (again / "run.toml").read_text() == (first / "run.toml").read_text().replace(
        str(first), str(again)
    )


def test_a_budgeted_run_reruns_with_the_epochs_its_budget_chose(tiny_png, tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    budgeted = ["--time-budget", "0.001s", "--epochs", "300", "--grades", "2", "--width", "8"]
    code, _, err = run_cli(["fit", tiny_png, "--out", first, *budgeted, "--quiet"], capsys)
    assert code == 0, err
    described = read_toml(str(first / "run.toml"))["training"]
    chosen = [g["settings"]["budget"]["epochs"] for g in grades_of(first)]
    assert "time_budget" not in described and described["epochs"] in (chosen[0], chosen)
    assert max(chosen) < 300
    code, _, err = run_cli(["fit", "--config", first / "run.toml", "--out", again], capsys)
    assert code == 0, err
    assert grades(again) == grades(first)


def grades_of(run_dir) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text())["grades"]


def test_options_override_the_config_file(tiny_png, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'[input]\nimage = "{tiny_png}"\n[model]\nwidth = 16\ngrades = 3\n')
    out = tmp_path / "run"
    args = ["fit", "--config", config, "--grades", "1", "--epochs", "10", "--quiet", "--out", out]
    assert run_cli(args, capsys)[0] == 0
    recorded = json.loads((out / "metrics.json").read_text())["config"]["model"]
    assert (recorded["width"], recorded["grades"]) == (16, 1)


@pytest.mark.parametrize(
    "text, line",
    [
        ("[model]\nwidht = 16\n", "unknown key model.widht; model has kind, preset"),
        ("[modle]\nwidth = 16\n", "unknown section [modle]"),
        ('[model]\nwidth = "wide"\n', "model.width must be an integer or a list of them"),
        ("[training]\nearly_stop = 1\n", "training.early_stop must be true or false, got 1"),
        ('[task]\nname = "segment"\n', "task.name must be one of regression, denoise, deblur"),
        ("[model\n", "not a readable TOML file"),
        (b"[model]\nwidth = 16 # \xff\n", "bad.toml: not a readable TOML file"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_key(tmp_path, capsys, text, line):
    config = tmp_path / "bad.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = run_cli(["fit", "--config", config, "--out", tmp_path / "r"], capsys)
    assert code == 2 and line in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_help_groups_the_options_as_the_description_and_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--help"])
    text = capsys.readouterr().out
    for title in ("input:", "task (", "model:", "training:", "resources:", "outputs:"):
        assert f"\n{title}" in text
    text = " ".join(text.split())
    assert "most grades for --grades auto (default: 8)" in text
    assert "300 for regression quick" in text and "10000 for regression paper/colour" in text
    # Every field of the description has its option (the image is the positional argument).
    for cls in SECTIONS.values():
        for f in fields(cls):
            assert f.name == "image" or flag_of(f) in text, f.name


def test_the_python_api_takes_the_same_description(tiny_png, tmp_path):
    run = RunConfig.load_dict({
        "input": {"image": str(tiny_png)}, "model": {"grades": 1, "width": 16},
        "training": {"epochs": 10}, "resources": {"device": "cpu"},
        "outputs": {"out": str(tmp_path / "api")},
    })  # fmt: skip
    outcome = mf.run_fit(run)
    assert outcome.status == 0 and len(outcome.result.model) == 1
    assert read_toml(str(tmp_path / "api" / "run.toml"))["model"]["width"] == 16
    with pytest.raises(InputError, match="unknown key training.epoch;"):
        RunConfig.load_dict({"training": {"epoch": 3}})
