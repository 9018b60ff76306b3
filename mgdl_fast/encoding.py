"""Input encodings of the coordinates grade 1 reads (Tancik et al. 2020, "Fourier Features Let
Networks Learn High Frequency Functions").

- ``fourier``: ``[cos(2 pi x B), sin(2 pi x B)]`` with ``B [D, m]`` drawn from
  ``N(0, sigma^2)`` (seeded): ``2m`` features.
- ``positional``: per coordinate, ``[cos(2 pi s_j x), sin(2 pi s_j x)]`` at ``m`` log-spaced
  scales ``s_j = sigma^(j / m)``, j = 0..m-1: ``2 m D`` features.

The frequencies are kept as a tensor (``matrix``), stored in checkpoints, so predict and
render reproduce the training inputs exactly whatever the generator does in later versions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .errors import InputError

ENCODINGS = ("none", "fourier", "positional")


@dataclass(frozen=True)
class EncodingConfig:
    """Which encoding, with ``frequencies`` (m), ``sigma`` and the ``seed`` of B."""

    kind: str = "none"
    frequencies: int = 64
    sigma: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ENCODINGS:
            raise InputError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.kind!r}")
        if not (isinstance(self.frequencies, int) and self.frequencies >= 1):
            raise InputError(f"frequencies must be an integer >= 1, got {self.frequencies!r}")
        if not (isinstance(self.sigma, (int, float)) and 0 < self.sigma < math.inf):
            raise InputError(f"sigma must be a finite number > 0, got {self.sigma!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Encoding:
    """``x [N, D]`` fp32 -> ``[N, out_dim]`` fp32 features. ``matrix`` is B ``[D, m]``
    (fourier) or the scales ``[m]`` (positional); made from the config when not given."""

    def __init__(self, config: EncodingConfig, in_dim: int, matrix: torch.Tensor | None = None):
        if config.kind == "none":
            raise ValueError("no Encoding object for kind 'none'")
        self.config, self.in_dim = config, in_dim
        if matrix is None:
            matrix = self._frequencies()
        expected = (
            (in_dim, config.frequencies) if config.kind == "fourier" else (config.frequencies,)
        )
        if tuple(matrix.shape) != expected:
            raise InputError(
                f"{config.kind} encoding frequencies must be {list(expected)}, got "
                f"{list(matrix.shape)}"
            )
        self.matrix = matrix.float()

    def _frequencies(self) -> torch.Tensor:
        m = self.config.frequencies
        if self.config.kind == "fourier":
            gen = torch.Generator().manual_seed(self.config.seed)
            return (
                torch.randn(self.in_dim, m, generator=gen, dtype=torch.float64) * self.config.sigma
            )
        return self.config.sigma ** (torch.arange(m, dtype=torch.float64) / m)

    @property
    def out_dim(self) -> int:
        m = self.config.frequencies
        return 2 * m if self.config.kind == "fourier" else 2 * m * self.in_dim

    def to(self, device: torch.device | str) -> Encoding:
        return Encoding(self.config, self.in_dim, self.matrix.to(device))

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x [n, D]`` -> ``[n, out_dim]`` fp32, written into ``out`` when given (an fp32
        ``[n, out_dim]`` view: the streamed path reuses one chunk buffer). The only temporary
        is the angles ``[n, out_dim / 2]``."""
        angles = encoding_angles(self.config.kind, self.matrix.to(x.device), x)
        if out is None:
            out = torch.empty(x.shape[0], self.out_dim, device=x.device)
        half = angles.shape[1]
        torch.cos(angles, out=out[:, :half])
        torch.sin(angles, out=out[:, half:])
        return out

    def to_module(self):
        """The encoding as an ``mgdl_fast.nn.InputEncoding`` module (a copy of ``matrix``)."""
        from .nn.encoding import InputEncoding

        return InputEncoding(self.config, self.in_dim, self.matrix.clone())


def encoding_angles(kind: str, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The angles ``[n, out_dim / 2]`` fp32 whose cos and sin are the features of ``x [n, D]``:
    ``2 pi x B`` (fourier, ``matrix`` B ``[D, m]``) or ``2 pi s_j x_d`` in (d, j) order
    (positional, ``matrix`` the scales ``[m]``). Plain torch ops, shared by ``Encoding`` and
    its module, so both give the same bits."""
    x = x.float()
    fourier = kind == "fourier"
    angles = x @ matrix if fourier else (x[:, :, None] * matrix).reshape(x.shape[0], -1)
    # In place: the angles are the one temporary (train/memory.py counts them).
    return angles.mul_(2 * math.pi)


def make_encoding(config: EncodingConfig | None, in_dim: int) -> Encoding | None:
    """The encoding for ``config`` (None for no encoding)."""
    if config is None or config.kind == "none":
        return None
    return Encoding(config, in_dim)
