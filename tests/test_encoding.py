"""Input encodings: the features they make, training on them, their round trip through a
checkpoint and predict (the encoded model reproduces its reconstruction), and encoded models as
modules (state_dict, to_sequential, torch.export)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgdl_fast import (
    BlockShape,
    Grade,
    ModelConfig,
    MultiGrade,
    RegressionTask,
    fit,
    load_checkpoint,
    save_checkpoint,
)  # fmt: skip
from mgdl_fast.encoding import Encoding, EncodingConfig
from mgdl_fast.errors import InputError
from mgdl_fast.nn import InputEncoding
from mgdl_fast.tasks.regression import RegressionObjective

from .helpers import quick_train, run_cli, small_camera


def test_fourier_features_are_cos_and_sin_of_the_seeded_projection():
    enc = Encoding(EncodingConfig("fourier", frequencies=3, sigma=2.0, seed=7), in_dim=2)
    gen = torch.Generator().manual_seed(7)
    b = torch.randn(2, 3, generator=gen, dtype=torch.float64) * 2.0
    x = torch.tensor([[0.25, 0.5]])
    angles = 2 * math.pi * (x.double() @ b)
    expected = torch.cat([torch.cos(angles), torch.sin(angles)], 1).float()
    torch.testing.assert_close(enc(x), expected, rtol=1e-6, atol=1e-6)
    assert enc.out_dim == 6


def test_positional_encoding_uses_log_spaced_scales_per_coordinate():
    enc = Encoding(EncodingConfig("positional", frequencies=4, sigma=16.0), in_dim=2)
    assert enc.out_dim == 16
    scales = 16.0 ** (torch.arange(4) / 4)
    torch.testing.assert_close(enc.matrix, scales.float())
    out = enc(torch.tensor([[0.5, 0.0]]))
    # Column order: cos of (coordinate, scale) pairs, then sin; coordinate 2 is 0.
    torch.testing.assert_close(out[0, 4:8], torch.ones(4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "wavelet"}, "encoding must be one of"),
        ({"kind": "fourier", "frequencies": 0}, "frequencies must be"),
        ({"kind": "fourier", "sigma": -1.0}, "sigma must be"),
    ],  # fmt: skip
)
def test_bad_encodings_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        EncodingConfig(**kwargs)


def test_an_encoded_model_trains_and_round_trips_through_a_checkpoint(tmp_path):
    task = RegressionTask(small_camera(16).pixels)
    model_cfg = ModelConfig(grades=2, width=16, encoding="fourier", frequencies=8, sigma=3.0)
    result = fit(task, RegressionObjective(task), model_cfg, quick_train(epochs=30),
                 progress=False)  # fmt: skip
    assert result.records[0].shape["in_dim"] == 16
    model = result.model
    rendered = model.render(16, 16)
    save_checkpoint(tmp_path / "enc", model, config={})
    loaded, _ = load_checkpoint(tmp_path / "enc.safetensors")
    assert loaded.encoding is not None and torch.equal(
        loaded.encoding.matrix, model.encoding.matrix
    )
    torch.testing.assert_close(loaded.render(16, 16), rendered, rtol=0, atol=0)


def test_fourier_features_from_the_cli_predict_reproduces_the_reconstruction(
    tiny_png, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["fit", tiny_png, "--out", out, "--grades", "2", "--width", "16", "--epochs", "20",
            "--encoding", "fourier", "--frequencies", "8", "--quiet"]  # fmt: skip
    assert run_cli(args, capsys)[0] == 0
    code, _, _ = run_cli(["predict", out, "--out", tmp_path / "r.npy"], capsys)
    assert code == 0
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), np.load(out / "reconstruction.npy"),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    code, _, err = run_cli(["fit", "--out", out, "--resume", "--sigma", "9", "--quiet"], capsys)
    assert code == 2 and "--sigma (5.0 -> 9.0)" in err


@pytest.mark.parametrize("kind", ["fourier", "positional"])
def test_the_encoding_module_gives_the_encodings_bits_in_any_autocast(kind):
    config = EncodingConfig(kind, frequencies=6, sigma=4.0, seed=3)
    encoding, x = Encoding(config, in_dim=2), torch.rand(50, 2)
    module = encoding.to_module()
    assert isinstance(module, InputEncoding) and module.out_dim == encoding.out_dim
    want = encoding(x)
    assert torch.equal(module(x), want)
    # The angles reach tens of radians: in bf16 they would keep no digit of their phase.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(module(x), want)
    assert torch.equal(module.to_encoding().matrix, encoding.matrix)


def _encoded_model():
    task = RegressionTask(small_camera(16).pixels)
    model_cfg = ModelConfig(grades=2, width=16, encoding="fourier", frequencies=8, sigma=3.0)
    return fit(task, RegressionObjective(task), model_cfg, quick_train(epochs=20),
               progress=False).model  # fmt: skip


def test_an_encoded_model_is_a_module_with_state_dict_sequential_and_export():
    model, x = _encoded_model(), torch.rand(300, 2)
    module = model.to_module()
    assert isinstance(module.encoding, InputEncoding)
    assert torch.equal(module(x), model.predict(x))
    assert torch.equal(module.features(x), model.features(x))
    assert torch.equal(module.to_model().predict(x), model.predict(x))
    # A fresh module of the same configuration loads the state (the frequencies included).
    config = model.encoding.config
    fresh = MultiGrade(
        [Grade(g.shape, seed=9) for g in model.grades],
        encoding=InputEncoding(EncodingConfig("fourier", 8, 3.0, seed=5), in_dim=2),
    )
    fresh.load_state_dict(module.state_dict())
    assert fresh.encoding.config == config and torch.equal(fresh(x), module(x))
    other = MultiGrade([Grade(g.shape) for g in model.grades],
                       encoding=InputEncoding(EncodingConfig("positional", 4), 2))  # fmt: skip
    with pytest.raises(InputError, match="this module is positional of 4 and 2"):
        other.load_state_dict(module.state_dict())
    stack = module.to_sequential()
    assert isinstance(stack[0], InputEncoding)
    torch.testing.assert_close(stack(x), model.predict(x), rtol=1e-4, atol=1e-5)
    n = torch.export.Dim("n", min=1)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: n},))
    assert torch.equal(program.module()(x[:77]), model.predict(x[:77]))
    plain = torch.export.export(stack, (x,), dynamic_shapes=({0: n},))
    targets = {str(node.target) for node in plain.graph.nodes if node.op == "call_function"}
    assert not any("mgdl_fast" in t for t in targets)
    torch.testing.assert_close(plain.module()(x), stack(x))


def test_a_grade_that_does_not_read_the_encoding_is_refused():
    encoding = InputEncoding(EncodingConfig("fourier", 8, 3.0), in_dim=2)
    with pytest.raises(InputError, match="grade 1 reads 2 inputs but the encoding makes 16"):
        MultiGrade([Grade(BlockShape(2, 16, 1, 1))], encoding=encoding)
