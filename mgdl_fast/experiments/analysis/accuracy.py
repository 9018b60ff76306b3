"""Measured accuracy of the Lanczos extremes against the dense Hessian's ``eigh``.

    python -m mgdl_fast.analysis.accuracy TASK --model mgdl|sgdl --width W --layers L
        [--grade G] [--eta ETA] [--steps S] [--downsample D] [--invert] [--k 10] [--json PATH]

Trains the network with plain GD for ``--steps`` iterations per grade (He init, as PROTOCOL 4)
up to MGDL grade G (or the SGDL network), forms that grade's Hessian densely, and compares the
k smallest and largest eigenvalues of ``I - eta*H`` from ``eigh`` with Lanczos in float64 and
with float32 Hessian-vector products: max relative error, the largest residual bound, products
and seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from ...io.environment import environment
from ...train.config import ModelConfig, TrainConfig
from ...train.trainer import fit
from .data import load_data, parse_synthetic
from .hessian import dense_hessian
from .spectrum import iteration_spectrum


def capture_grade(data, model_cfg: ModelConfig, eta: float, steps: int) -> dict:
    """``shape``, ``theta`` (float64), ``x``, ``y`` of the last grade's loss after ``steps`` GD
    iterations in every grade (He init)."""
    captured: dict[str, Any] = {}
    train_cfg = TrainConfig(
        epochs=steps + 1, lr=eta, optimizer="gd", device="cpu", early_stopping=False, init="he"
    )

    def hook(g, epoch, params, inputs, objective):
        if g == (model_cfg.grades if model_cfg.kind == "mgdl" else 1) and epoch == steps:
            captured.update(
                shape=params.shape,
                theta=params.flat.detach().double().clone(),
                x=inputs.get("train").clone(),
                y=objective.residual["train"].clone(),
            )
            return "captured"
        return None

    fit(data.task, data.objective, model_cfg, train_cfg, progress=False, hook=hook)
    return captured


def compare(problem: dict, eta: float, k: int) -> dict:
    """Dense eigh against Lanczos (float64 and float32 products) at one iterate."""
    shape, theta, x, y = (problem[key] for key in ("shape", "theta", "x", "y"))
    start = time.perf_counter()
    hessian = dense_hessian(shape, theta, x, y)
    hessian_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = torch.linalg.eigvalsh(torch.eye(theta.numel(), dtype=torch.float64) - eta * hessian)
    report = {
        "params": theta.numel(),
        "train_points": x.shape[0],
        "dense_hessian_s": hessian_s,
        "eigh_s": time.perf_counter() - start,
        "exact_smallest": exact[:k].tolist(),
        "exact_largest": exact[-k:].tolist(),
    }
    want = torch.cat([exact[:k], exact[-k:]])
    for name, dtype in (("lanczos_float64", torch.float64), ("lanczos_float32", torch.float32)):
        spectrum = iteration_spectrum(shape, theta, x, y, eta, k, method="lanczos", dtype=dtype)
        got = torch.tensor(spectrum.smallest + spectrum.largest, dtype=torch.float64)
        report[name] = {
            "max_rel_error": float(((got - want).abs() / want.abs()).max()),
            "max_abs_error": float((got - want).abs().max()),
            "max_bound": max(spectrum.bound_smallest + spectrum.bound_largest),
            "products": spectrum.products,
            "converged": spectrum.converged,
            "seconds": spectrum.seconds,
        }
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mgdl_fast.analysis.accuracy")
    p.add_argument("task")
    p.add_argument("--model", choices=("mgdl", "sgdl"), default="mgdl")
    p.add_argument("--grades", type=int, default=4, help="SGDL depth: grades * layers")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--grade", type=int, default=1, help="MGDL grade whose Hessian is compared")
    p.add_argument("--eta", type=float, default=5e-3)
    p.add_argument("--steps", type=int, default=1000, help="GD iterations per grade first")
    p.add_argument("--downsample", type=int, default=1)
    p.add_argument("--invert", action="store_true")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args(argv)
    if parse_synthetic(args.task) is None:
        data = load_data(args.task, downsample=args.downsample, invert=args.invert)
    else:
        data = load_data(args.task)
    # MGDL trains grades 1..G and compares grade G; SGDL is one block of grades*layers layers.
    grades = args.grade if args.model == "mgdl" else args.grades
    model_cfg = ModelConfig(args.model, grades, args.width, args.layers)
    report = compare(capture_grade(data, model_cfg, args.eta, args.steps), args.eta, args.k)
    report.update(
        config={**vars(args), "model_config": model_cfg.to_dict()},
        environment=environment(torch.device("cpu")),
    )
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
