"""Streamed training computes what in-memory training does: chunked full-batch gradients,
per-chunk coordinates, features on disk, the image read band by band (issue 15)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, RegressionTask, fit
from mgdl_fast.io.lazy import lazy_from_array
from mgdl_fast.tasks.lattice import StreamedRegressionTask
from mgdl_fast.tasks.regression import RegressionObjective
from mgdl_fast.tasks.restoration import InverseTask, TVObjective
from mgdl_fast.train.features import DiskFeatures, HostFeatures, grade_inputs
from mgdl_fast.train.trainer import bind_grade

from ..helpers import quick_train, tiny_model

# Chunk sums reorder the fp32 reductions. Gradient descent keeps the runs this close; Adam
# divides by sqrt(v), which turns rounding in a near-zero gradient entry into a visible step,
# so Adam runs are compared on their metrics.
ATOL = 2e-5


@pytest.fixture(scope="module")
def pixels():
    """An awkward 37 x 43 image (odd sides: train and val splits of different sizes)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:37, 0:43] / 40.0
    smooth = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    return np.clip(smooth + 0.05 * rng.standard_normal(smooth.shape), 0, 1)[..., None]


def _regression(task, optimizer, model=None, **train):
    objective = RegressionObjective(task)
    lr = 0.2 if optimizer == "gd" else 2e-3
    cfg = quick_train(epochs=12, record_every=4, test_every=4, optimizer=optimizer, lr=lr, **train)
    return fit(task, objective, model or tiny_model(grades=3), cfg, progress=False)


def _assert_same_fit(a, b, params: bool = True):
    assert a.diverged is None and b.diverged is None
    assert len(a.model) == len(b.model) == len(a.records) > 0
    if params:
        for pa, pb in zip(a.model.grades, b.model.grades, strict=True):
            torch.testing.assert_close(pa.flat, pb.flat, atol=ATOL, rtol=0)
    for ra, rb in zip(a.records, b.records, strict=True):
        for key, value in ra.final.items():
            assert rb.final[key] == pytest.approx(value, rel=1e-4), key


def test_streamed_task_has_the_in_memory_splits(pixels):
    eager = RegressionTask(pixels)
    streamed = StreamedRegressionTask(lazy_from_array(pixels), band_rows=5)
    for name, split in eager.splits.items():
        lazy = streamed.splits[name]
        assert lazy.x is None
        torch.testing.assert_close(lazy.y, split.y, atol=0, rtol=0)
        rows = split.x.shape[0]
        for start, stop in ((0, rows), (3, 17), (rows - 5, rows)):
            torch.testing.assert_close(
                streamed.coords(name, start, stop), split.x[start:stop], atol=0, rtol=0
            )


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
@pytest.mark.parametrize("store", ["memory", "disk"])
def test_streamed_regression_equals_in_memory(pixels, store, optimizer):
    in_memory = _regression(RegressionTask(pixels), optimizer)
    streamed = _regression(
        StreamedRegressionTask(lazy_from_array(pixels), band_rows=7),
        optimizer,
        stream=True,
        chunk_size=97,
        feature_store=store,
    )
    _assert_same_fit(in_memory, streamed, params=optimizer == "gd")


@pytest.mark.parametrize("kind", ["fourier", "positional"])
def test_streamed_encoded_regression_equals_in_memory(pixels, kind):
    """Streamed, every chunk is encoded into one reused buffer (valid until the next chunk)."""
    model = replace(tiny_model(grades=2), encoding=kind, frequencies=4, sigma=3.0)
    in_memory = _regression(RegressionTask(pixels), "gd", model)
    streamed = _regression(
        StreamedRegressionTask(lazy_from_array(pixels), band_rows=7),
        "gd",
        model,
        stream=True,
        chunk_size=97,
        feature_store="disk",
    )
    _assert_same_fit(in_memory, streamed)


def test_a_chunked_step_is_the_full_batch_gradient(pixels):
    task = RegressionTask(pixels)
    params = BlockParams.init(BlockShape(2, 32, 2, 1), seed=3)
    results = []
    for stream in (False, True):
        cfg = quick_train(stream=stream, chunk_size=97)
        objective = RegressionObjective(task)
        inputs = grade_inputs(task, objective.splits, None, cfg)
        engine = bind_grade(params.shape, inputs, objective, cfg)
        objective.start_grade(engine, inputs, params)
        grad = params.zeros_like()
        loss = objective.step(inputs, params, grad)
        results.append((loss.item(), grad.flat.clone()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-7, rtol=1e-5)


def test_disk_features_live_in_the_work_directory_until_released(pixels, tmp_path):
    task = StreamedRegressionTask(lazy_from_array(pixels))
    seen = []
    cfg = quick_train(epochs=3, stream=True, chunk_size=128, feature_store="disk")
    fit(
        task,
        RegressionObjective(task),
        tiny_model(grades=2),
        cfg,
        progress=False,
        work_dir=tmp_path / "features",
        on_grade_end=lambda r: seen.append(sorted(p.name for p in tmp_path.rglob("*.features"))),
    )
    assert seen[0] == ["test.features", "train.features", "val.features"]
    assert not list(tmp_path.rglob("*.features"))


def test_streamed_tv_denoising_equals_in_memory(pixels):
    def run(**train):
        task = InverseTask(pixels, noise=10 / 255, blur_sigma=None, seed=1)
        objective = TVObjective(task, beta=0.05, lam=2e-3, alpha=1.0)
        # lr 3e-4: at 1e-3 every unit of grade 1 dies, which is a collapse (issue 20).
        cfg = quick_train(epochs=8, record_every=4, test_every=4, optimizer="gd", lr=3e-4, **train)
        return fit(task, objective, tiny_model(grades=2), cfg, progress=False)

    _assert_same_fit(run(), run(stream=True, chunk_size=101, feature_store="disk"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_disk_features_round_trip_chunks(tmp_path, dtype):
    rows = {"train": 300, "test": 41}
    store = DiskFeatures(tmp_path / "f", rows, 5, dtype, "cpu")
    data = {s: torch.randn(n, 5).to(dtype) for s, n in rows.items()}
    for split, values in data.items():
        for start in range(0, values.shape[0], 64):
            store.write(split, start, values[start : start + 64])
    inputs = store.finish()
    for split, values in data.items():
        got = torch.cat([x.clone() for _, x in inputs.chunks(split, 77)])
        torch.testing.assert_close(got, values, atol=0, rtol=0)
        torch.testing.assert_close(inputs.get(split), values, atol=0, rtol=0)
    inputs.release()
    assert not (tmp_path / "f").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_features_stream_to_the_gpu_in_order():
    rows = {"train": 1000}
    store = HostFeatures(rows, 8, torch.bfloat16, "cuda")
    values = torch.randn(1000, 8).to(torch.bfloat16)
    store.write("train", 0, values)
    got = torch.cat([x.clone() for _, x in store.finish().chunks("train", 96)]).cpu()
    torch.testing.assert_close(got, values, atol=0, rtol=0)
