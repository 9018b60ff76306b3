"""An input encoding (mgdl_fast/encoding.py: Fourier or positional features) as an
``nn.Module``: plain torch ops (a product, cos and sin), so it exports with ``torch.export``
and runs without the mgdl_fast ops, and ``MultiGrade`` composes it in front of grade 1."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..encoding import Encoding, EncodingConfig, encoding_angles
from ..errors import InputError

__all__ = ["InputEncoding"]


class InputEncoding(nn.Module):
    """``x [N, D]`` fp32 -> ``[N, out_dim]`` fp32: ``[cos(angles), sin(angles)]`` of the
    encoding's angles (``mgdl_fast.encoding``), the same bits as ``Encoding``.

    ``matrix`` (B ``[D, m]`` for fourier, the scales ``[m]`` for positional) is a buffer, so
    ``state_dict`` holds it and the config travels as extra state. Autocast is off inside:
    the angles reach hundreds of radians, where bf16 would keep no digit of their phase.
    """

    matrix: Tensor

    def __init__(self, config: EncodingConfig, in_dim: int, matrix: Tensor | None = None):
        """The encoding of ``config`` for ``in_dim`` inputs; ``matrix`` None: the seeded
        frequencies a trainer run with ``config`` reads."""
        super().__init__()
        encoding = Encoding(config, in_dim, matrix)
        self.config, self.in_dim, self.out_dim = config, in_dim, encoding.out_dim
        self.register_buffer("matrix", encoding.matrix)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x)
        angles = encoding_angles(self.config.kind, self.matrix, x)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)

    def to_encoding(self) -> Encoding:
        """The trainer's ``Encoding`` (a copy of ``matrix``)."""
        return Encoding(self.config, self.in_dim, self.matrix.detach().clone())

    def get_extra_state(self) -> dict:
        return {**self.config.to_dict(), "in_dim": self.in_dim}

    def set_extra_state(self, state: dict) -> None:
        """Take the state's config (its sigma and seed made the loaded ``matrix``); its kind,
        frequencies and input dim must be this module's (they fix the shapes)."""
        theirs = EncodingConfig(**{k: v for k, v in state.items() if k != "in_dim"})
        mine = (self.config.kind, self.config.frequencies, self.in_dim)
        if (theirs.kind, theirs.frequencies, state.get("in_dim")) != mine:
            raise InputError(
                f"state is of a {theirs.kind} encoding of {theirs.frequencies} frequencies and "
                f"{state.get('in_dim')} inputs, this module is {mine[0]} of {mine[1]} and {mine[2]}"
            )
        self.config = theirs

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.kind}, D={self.in_dim}, m={c.frequencies}, sigma={c.sigma}, out={self.out_dim}"
