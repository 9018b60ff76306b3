"""Input encodings: the features they make, training on them, and their round trip through a
checkpoint and predict (the encoded model reproduces its reconstruction)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgdl_fast import ModelConfig, RegressionTask, fit, load_checkpoint, save_checkpoint
from mgdl_fast.encoding import Encoding, EncodingConfig
from mgdl_fast.errors import InputError
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
