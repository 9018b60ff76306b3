"""The training loop's promises: a grade binds once and its epochs plan and allocate nothing; a
K-epoch block equals K plain epochs bit for bit and never waits for the device; CUDA graphs are
used exactly when the engine, the objective and the configuration allow them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mgdl_fast import BlockParams, RegressionTask, backends, fit
from mgdl_fast.backends import engine as engine_module
from mgdl_fast.tasks.regression import RegressionObjective
from mgdl_fast.train import epochs
from mgdl_fast.train.features import FeatureCache
from mgdl_fast.train.optim import GradeOptimizer
from mgdl_fast.train.trainer import grade_shapes, use_cuda_graph

from ..helpers import quick_train, small_camera, tiny_model
from ..ops.cases import backend_params


@pytest.fixture(scope="module")
def task():
    return RegressionTask(small_camera(16).pixels)


@pytest.mark.parametrize("name", backend_params())
def test_a_grade_binds_once_and_its_epochs_plan_and_allocate_nothing(task, name, monkeypatch):
    blocks, run = [], epochs.EpochRunner.run

    def counted(self, k):
        before = vars(engine_module.counters).copy()
        run(self, k)
        blocks.append((k, before, vars(engine_module.counters).copy()))

    monkeypatch.setattr(epochs.EpochRunner, "run", counted)
    binds = engine_module.counters.binds
    cfg = quick_train(epochs=100, backend=name, precision="fp32" if name != "cuda" else None)
    result = fit(task, RegressionObjective(task), tiny_model(grades=1), cfg, progress=False)
    assert engine_module.counters.binds - binds == 1
    assert sum(k for k, _, _ in blocks) == 100 and len(blocks) < 100
    assert all(before == after for _, before, after in blocks), blocks
    assert result.records[0].backend["backend"] == name
    assert set(result.records[0].backend["ops"].values()) == {name}


def _runner(task, seed: int = 0):
    params = BlockParams.init(grade_shapes(tiny_model(grades=1), 2, 1)[0], seed=seed)
    inputs = FeatureCache({name: split.x for name, split in task.splits.items()})
    objective = RegressionObjective(task)
    engine = backends.bind(params.shape, device="cpu", rows=256, backend="torch")
    objective.start_grade(engine, inputs, params)
    optimizer = GradeOptimizer(engine, "adam", 1e-2, params.flat.numel())
    grad = params.zeros_like()
    return epochs.EpochRunner(objective, optimizer, inputs, params, grad, cuda_graph=False)


def test_a_block_of_k_epochs_equals_k_plain_epochs_bit_for_bit(task):
    block, plain = _runner(task), _runner(task)
    block.run(7)
    for _ in range(7):
        plain.objective.step(plain.inputs, plain.params, plain.grad)
        plain.optimizer.step(plain.params, plain.grad)
    assert torch.equal(block.params.flat, plain.params.flat)
    assert torch.equal(block.optimizer.state.exp_avg_sq, plain.optimizer.state.exp_avg_sq)
    assert block.optimizer.state.step.item() == plain.optimizer.state.step.item() == 7


def test_nothing_inside_a_block_waits_for_the_device(task, monkeypatch):
    runner = _runner(task)
    calls = []
    spied = ((torch.Tensor, "item"), (torch.Tensor, "tolist"), (torch.cuda, "synchronize"))
    for owner, name in spied:
        original = getattr(owner, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    runner.run(25)
    assert calls == []
    assert runner.optimizer.state.step.item() == 25 and calls == ["item"]


def test_cuda_graphs_are_used_only_when_everything_allows_them():
    cfg = quick_train()
    engine = SimpleNamespace(capturable=True, device=torch.device("cuda"))
    regression = SimpleNamespace(capturable=True)
    assert use_cuda_graph(engine, regression, cfg, hook=None)
    assert not use_cuda_graph(engine, regression, cfg, hook=lambda *a: None)
    assert not use_cuda_graph(engine, SimpleNamespace(capturable=False), cfg, hook=None)
    assert not use_cuda_graph(engine, regression, quick_train(cuda_graph=False), hook=None)
    cpu = SimpleNamespace(capturable=True, device=torch.device("cpu"))
    assert not use_cuda_graph(cpu, regression, cfg, hook=None)
