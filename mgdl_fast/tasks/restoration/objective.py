"""The denoising / deblurring objective (PROTOCOL 3): total-variation regularised fitting of a
degraded image with an auxiliary variable ``u`` updated by a proximal step before every
optimizer step.

Grade k's network ``N_k`` predicts the whole image ``pred = s_k N_k + acc``: ``acc`` is the
accumulated image of grades 1..k-1 (0 before grade 1) and ``s_k`` the RMSE of ``acc`` against
the observation (1 for grade 1), stored as the grade's output scale in the model so that
``MultiGradeModel.predict`` renders ``sum_k s_k N_k``. The loss (sums, not means) is

    0.5 |K pred - y|^2 + 0.5 beta |D pred - u|^2 + lambda |u|_1

with ``K`` the blur (identity for denoising) and ``D`` the forward-difference TV operator. Each
step: one block forward, ``u <- prox(u, D pred)`` at the current parameters, dL/dpred by torch
autograd in image space, then the block backward from ``dL/dout = s_k dL/dpred``. ``u`` is
carried across grades; it cannot be recomputed from the model, so ``state_dict`` /
``load_state_dict`` keep it in the run's checkpoint for ``--resume``.

Sharded over ranks (``InverseTask(world=...)``), the loss still couples neighbouring pixels,
so the image-space work is not split: each rank runs the block forward on its rows of the
features, an all_gather assembles the whole prediction ``[H*W, C]`` on every rank (H*W*C
floats, small next to the ``[H*W, W]`` features), ``u``, the loss and ``dL/dpred`` are computed
identically on every rank (so ``u`` and ``acc`` are whole, never sharded, and a checkpoint of
rank 0 is complete), each rank backpropagates its own rows of ``dL/dout`` through its features,
and the ranks' dW are summed by one all_reduce that also carries the loss (rank 0's copy). Two
ranks holding one chunk each compute, bit for bit, one process whose chunks end at the shard
boundary: dW is a sum over pixels, ``g_0 + g_1`` either way.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...block import BlockParams
from ...distributed import SINGLE, PackedSum, RowGather, gather_rows
from ...errors import InputError
from .observation import InverseTask
from .operators import forward_diff, prox_l1, psnr, tv_loss


class TVObjective:
    """What a denoising or deblurring grade minimises (a ``tasks.base.Objective``)."""

    splits = ("train",)
    ops = ("forward", "backward")
    # Each step runs torch autograd in image space and replaces ``u``: not graph-capturable.
    capturable = False

    def __init__(
        self,
        task: InverseTask,
        *,
        beta: float,
        lam: float,
        alpha: float = 0.99,
    ):
        for name, value, ok in (
            ("beta", beta, beta > 0),
            ("lambda", lam, lam >= 0),
            ("alpha", alpha, 0 < alpha <= 1),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                raise InputError(f"{name} out of range: {value!r} (need beta > 0, lambda >= 0)")
        self.task = task
        self.beta, self.lam, self.alpha = float(beta), float(lam), float(alpha)
        channels, height, width = task.observed.shape
        # [C, H, W] accumulated image and [C, 2H, W] auxiliary variable, both 0 before grade 1.
        self.acc = torch.zeros_like(task.observed)
        self.u = torch.zeros(channels, 2 * height, width, device=task.observed.device)
        self.grades = 0
        self.scale = 1.0
        self._last_scale = 1.0
        self.world = getattr(task, "world", SINGLE)
        self._pixels = height * width

    def _next_scale(self) -> float:
        """Output scale of the next grade: 1 for grade 1, then RMSE(acc - observed)."""
        if self.grades == 0:
            return 1.0
        diff = self.acc.double() - self.task.observed.double()
        return math.sqrt(torch.mean(diff * diff).item())

    def _image(self, out: torch.Tensor) -> torch.Tensor:
        """Network output ``[H*W, C]`` (row-major pixels) as an image ``[C, H, W]``."""
        return out.T.reshape(self.acc.shape)

    def start_grade(self, engine, inputs, params: BlockParams) -> None:
        """Bind the grade: one forward output buffer for the whole image, the grade's scale;
        a gradient buffer when the pixels take several engine calls."""
        _, x = next(inputs.chunks("train", engine.rows))
        engine.validate(x, params.flat)
        n = inputs.rows("train")
        if n > engine.rows and n % engine.rows:
            engine.prepare(n % engine.rows)
        self._engine = engine
        device, channels = params.flat.device, params.shape.out_dim
        self._out = torch.empty(n, channels, device=device)
        self._chunk_grad = torch.empty_like(params.flat) if n > engine.rows else None
        if self.world.sharded:
            self._gather = RowGather(self.world, self._pixels, channels, device)
            self._packed = PackedSum(self.world, params.flat.numel(), device)
        self.scale = self._next_scale()

    def _forward(self, inputs, params: BlockParams) -> torch.Tensor:
        """The block's output ``[H*W, C]`` for every pixel, in engine-sized chunks (this
        rank's rows, gathered from every rank when sharded)."""
        for start, x in inputs.chunks("train", self._engine.rows):
            self._engine.forward(x, params.flat, self._out[start : start + x.shape[0]])
        return self._gather(self._out) if self.world.sharded else self._out

    def _backward(self, inputs, params: BlockParams, grad_out, grad: torch.Tensor) -> None:
        """dL/dparams ``grad [P]`` from this rank's ``grad_out [n, C]``: one call, or summed
        over chunks."""
        if self._chunk_grad is None:
            _, x = next(inputs.chunks("train", self._engine.rows))
            self._engine.backward(x, params.flat, grad_out, grad)
            return
        grad.zero_()
        for start, x in inputs.chunks("train", self._engine.rows):
            rows = grad_out[start : start + x.shape[0]]
            self._engine.backward(x, params.flat, rows, self._chunk_grad)
            grad.add_(self._chunk_grad)

    def _loss(self, pred: torch.Tensor) -> torch.Tensor:
        task = self.task
        return tv_loss(pred, task.observed, self.u, self.beta, self.lam, task.kernel)

    def step(self, inputs, params: BlockParams, grad: BlockParams) -> torch.Tensor:
        """Update ``u`` at the current parameters, then write dL/dparams into ``grad``.
        Returns the loss (at the updated ``u``) as a 0-dim device tensor."""
        with torch.no_grad():
            pred = self.acc + self.scale * self._image(self._forward(inputs, params))
            self.u = prox_l1(
                self.u, forward_diff(pred), self.alpha, self.alpha * self.lam / self.beta
            )
        pred.requires_grad_(True)
        with torch.enable_grad():
            loss = self._loss(pred)
            (grad_pred,) = torch.autograd.grad(loss, pred)
        # dL/dout [H*W, C] = s_k dL/dpred, in the block's pixel order.
        grad_out = grad_pred.reshape(grad_pred.shape[0], -1).T.mul(self.scale).contiguous()
        if not self.world.sharded:
            self._backward(inputs, params, grad_out, grad.flat)
            return loss.detach()
        start, stop = self.world.rows(self._pixels)
        packed = self._packed
        self._backward(inputs, params, grad_out[start:stop], packed.grad)
        # Every rank holds the same loss: rank 0's rides in the buffer, the others add 0.
        packed.loss.fill_(loss.detach() if self.world.is_main else 0.0)
        packed.reduce()
        grad.flat.copy_(packed.grad)
        return packed.loss

    @torch.no_grad()
    def _predict(self, inputs, params: BlockParams) -> torch.Tensor:
        """``acc + s_k N_k(x)`` as ``[C, H, W]``."""
        return self.acc + self.scale * self._image(self._forward(inputs, params))

    @torch.no_grad()
    def record(self, inputs, params: BlockParams, *, with_test: bool) -> dict[str, torch.Tensor]:
        """The loss and the PSNR against the clean image after the latest step."""
        pred = self._predict(inputs, params)
        return {"train_loss": self._loss(pred), "psnr": psnr(pred, self.task.clean)}

    def postfix(self, log) -> dict[str, str]:
        return {"loss": f"{log.last('train_loss'):.4g}", "psnr": f"{log.last('psnr'):.2f}"}

    def grade_scale(self) -> float:
        """The output scale of the grade absorbed last."""
        return self._last_scale

    def absorb(self, outputs: dict[str, torch.Tensor]) -> None:
        """Add a frozen grade's scaled output ``[H*W, C]`` to the accumulated image."""
        scale = self._next_scale()
        self.acc += scale * self._image(gather_rows(self.world, outputs["train"], self._pixels))
        self.grades += 1
        self._last_scale = scale

    @torch.no_grad()
    def final_metrics(self) -> dict[str, float]:
        """Loss, PSNR and the scales of the accumulated image after the latest grade."""
        return {
            "train_loss": self._loss(self.acc).item(),
            "psnr": psnr(self.acc, self.task.clean).item(),
            "observed_psnr": self.task.observed_psnr,
            "scale": self._last_scale,
            "next_scale": self._next_scale(),
        }

    def reconstruction(self) -> np.ndarray:
        """The accumulated image ``[H, W, C]`` (float32, unclipped)."""
        return self.acc.permute(1, 2, 0).cpu().numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a resumed run cannot recompute from the frozen grades: ``u [C, 2H, W]``."""
        return {"u": self.u}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``u``; refuses one of another shape (a checkpoint of another image)."""
        u = state["u"]
        if tuple(u.shape) != tuple(self.u.shape):
            raise InputError(
                f"saved TV variable u is {list(u.shape)}, this image needs {list(self.u.shape)}"
            )
        self.u = u.to(self.u.device).clone()
