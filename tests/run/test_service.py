"""The run service: nothing is bound, planned or launched before training starts (the memory
plan reads what backends declare), and a run that fails before it begins leaves nothing."""

from __future__ import annotations

import pytest

import mgdl_fast as mf
from mgdl_fast.backends.engine import counters
from mgdl_fast.errors import InputError
from mgdl_fast.run import service


def tiny_run(image, out, **training) -> mf.RunConfig:
    return mf.RunConfig.load_dict({
        "input": {"image": str(image)}, "model": {"grades": 2, "width": 16},
        "training": {"epochs": 10, **training}, "resources": {"device": "cpu"},
        "outputs": {"out": str(out)},
    })  # fmt: skip


@pytest.mark.auto_precision
def test_the_first_bind_and_launch_of_a_fit_happen_in_training(tiny_png, tmp_path, monkeypatch):
    seen = {}
    real = service.fit

    def training(*args, **kwargs):
        seen["at_training"] = (counters.binds, counters.plans, counters.buffers)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "fit", training)
    before = (counters.binds, counters.plans, counters.buffers)
    outcome = mf.run_fit(tiny_run(tiny_png, tmp_path / "run"))
    assert outcome.status == 0
    assert seen["at_training"] == before
    assert counters.binds > before[0]


def test_bad_settings_leave_no_run_directory(tiny_png, tmp_path):
    with pytest.raises(InputError, match="learning rate must be a finite number > 0"):
        mf.run_fit(tiny_run(tiny_png, tmp_path / "run", lr=-1.0))
    assert not (tmp_path / "run").exists()
