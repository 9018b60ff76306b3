"""Image operators of the denoising and deblurring losses (PROTOCOL 3.2, 1.3), as vectorised
torch code that autograd differentiates.

Images are ``[..., H, W]`` tensors (leading dimensions are channels or a batch). ``blur`` is the
authors' Gaussian blur: a normalised kernel of size ``6 sigma + 1`` applied as a correlation
over a symmetrically padded image (numpy ``mode='symmetric'``, scipy ``mode='reflect'``), so the
output has the input's size. ``forward_diff`` is their TV operator ``D``: vertical then
horizontal forward differences with the last row / column 0, stacked into ``[..., 2H, W]``.
``prox_l1`` is the update of the auxiliary variable ``u`` before every optimizer step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import InputError


def kernel_size(sigma: float) -> int:
    """Odd kernel size ``2 ceil(3 sigma) + 1``: the authors' ``6 sigma + 1`` (19, 31, 43 for
    sigma 3, 5, 7) whenever ``3 sigma`` is an integer, and the next odd size otherwise (their
    formula gives an even, off-centre kernel there, whose output is not the image's size)."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise InputError(f"blur sigma must be a finite number > 0, got {sigma!r}")
    return 2 * math.ceil(3 * sigma - 1e-9) + 1


def gaussian_kernel_1d(sigma: float, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The normalised 1D Gaussian ``g [S]`` on ``ax = arange(-S//2 + 1, S//2 + 1)`` (Python
    precedence, as the authors' code: -9..9 for S = 19). The authors' 2D kernel
    ``exp(-(xx^2 + yy^2) / (2 sigma^2)) / sum`` is exactly ``outer(g, g)``."""
    size = kernel_size(sigma)
    ax = torch.arange(-size // 2 + 1, size // 2 + 1, dtype=torch.float64)
    g = torch.exp(-(ax**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_kernel_2d(sigma: float, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The authors' 2D kernel ``[S, S]`` (sums to 1)."""
    g = gaussian_kernel_1d(sigma, dtype=torch.float64)
    return torch.outer(g, g).to(dtype=dtype, device=device)


def symmetric_index(n: int, pad: int, device=None) -> torch.Tensor:
    """Indices ``[n + 2 pad]`` into an axis of length ``n`` that pad it symmetrically (the edge
    sample repeated: d c b a | a b c d | d c b a), repeating with period ``2n`` like numpy when
    ``pad > n``."""
    i = torch.arange(-pad, n + pad, device=device).remainder(2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def blur(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of ``image [..., H, W]`` with the separable kernel ``kernel [S]`` (S odd),
    symmetric padding, same-size output ``[..., H, W]``.

    Two 1D correlations equal the authors' 2D correlation with ``outer(kernel, kernel)`` up to
    rounding, at 2S instead of S^2 multiply-adds per pixel.
    """
    size = kernel.shape[0]
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    pad = size // 2
    *lead, height, width = image.shape
    x = image.reshape(-1, 1, height, width)
    x = x.index_select(2, symmetric_index(height, pad, image.device))
    x = x.index_select(3, symmetric_index(width, pad, image.device))
    k = kernel.to(image.dtype)
    x = F.conv2d(x, k.view(1, 1, size, 1))
    x = F.conv2d(x, k.view(1, 1, 1, size))
    return x.reshape(*lead, height, width)


def forward_diff(image: torch.Tensor) -> torch.Tensor:
    """TV operator ``D``: ``[..., H, W] -> [..., 2H, W]``, vertical forward differences (last row
    0) stacked over horizontal ones (last column 0), as ``vstack([diff(p, axis=0,
    append=p[-1:]), diff(p, axis=1, append=p[:, -1:])])`` in the authors' code."""
    vertical = torch.diff(image, dim=-2, append=image[..., -1:, :])
    horizontal = torch.diff(image, dim=-1, append=image[..., :, -1:])
    return torch.cat([vertical, horizontal], dim=-2)


def prox_l1(u: torch.Tensor, d: torch.Tensor, alpha: float, threshold: float) -> torch.Tensor:
    """``soft(alpha d + (1 - alpha) u, threshold)``, ``soft(t, s) = sign(t) max(|t| - s, 0)``:
    the proximal step for ``u`` (PROTOCOL 3.2: threshold ``alpha lambda / beta``)."""
    t = alpha * d + (1.0 - alpha) * u
    return torch.sign(t) * torch.clamp(t.abs() - threshold, min=0.0)


def tv_loss(
    pred: torch.Tensor,
    observed: torch.Tensor,
    u: torch.Tensor,
    beta: float,
    lam: float,
    kernel: torch.Tensor | None = None,
) -> torch.Tensor:
    """The grade loss (sums, not means) of ``pred [..., H, W]`` at fixed ``u [..., 2H, W]``:
    ``0.5 |K pred - y|^2 + 0.5 beta |D pred - u|^2 + lambda |u|_1``, with ``K`` the blur when
    ``kernel`` is given and the identity otherwise. Returns a 0-dim tensor."""
    fitted = pred if kernel is None else blur(pred, kernel)
    data = 0.5 * torch.sum((fitted - observed) ** 2)
    return data + 0.5 * beta * torch.sum((forward_diff(pred) - u) ** 2) + lam * u.abs().sum()


def psnr(pred: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``-10 log10(mean((pred - clean)^2))`` (peak 1, no clipping) as a 0-dim tensor."""
    return -10.0 * torch.log10(torch.mean((pred.double() - clean.double()) ** 2))
