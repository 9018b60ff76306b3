"""A front end's own MGDL training loop on mgdl_fast's public modules and ops, not its trainer.

What a PyTorch user would write: an encoded ``mf.MultiGrade`` (Fourier features, then grades),
each grade trained by ``torch.optim.Adam`` on minibatches that a ``DataLoader`` draws and worker
threads prepare (the frozen grades' features, computed by the mgdl_fast ops in those threads
while the main thread trains), the loss under ``torch.autocast``, evaluation under
``torch.inference_mode()``, and a checkpoint after every grade. It prints the test PSNR of the
fit and of ``mf.fit_regression`` (the trainer: full-batch Adam) at the same setting.

    python examples/custom_loop.py --size 128 --grades 3 --width 64 --epochs 300

tests/test_examples.py runs it at a small setting.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import mgdl_fast as mf
from mgdl_fast.encoding import EncodingConfig
from mgdl_fast.nn import InputEncoding

SHARED_CAMERAMAN = Path(__file__).resolve().parents[2] / "shared" / "images" / "cameraman.tif"


@dataclass(frozen=True)
class Setting:
    """The model and training both loops share."""

    size: int = 64
    grades: int = 2
    width: int = 32
    layers: int = 2
    frequencies: int = 32
    sigma: float = 2.0
    epochs: int = 100
    lr: float = 1e-2
    batch: int = 256
    workers: int = 2
    seed: int = 0


def cameraman(size: int) -> mf.Image:
    """Cameraman (``../shared/images/cameraman.tif`` when present, else skimage's copy)
    resized to ``size`` x ``size`` with anti-aliasing."""
    from skimage import data, transform

    if SHARED_CAMERAMAN.is_file():
        pixels = mf.load_image(SHARED_CAMERAMAN).pixels
    else:
        pixels = data.camera()[..., None] / 255.0
    small = transform.resize(pixels, (size, size), anti_aliasing=True)
    return mf.from_array(small.clip(0.0, 1.0), source=f"cameraman{size}")


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB for values in [0, 1]."""
    return -10.0 * math.log10(torch.mean((prediction - target) ** 2).item())


def threaded(batches, prepare, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``prepare(*batch)`` of every batch in ``workers`` threads, in order, ``workers``
    batches ahead of the consumer."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(prepare, *batch))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def grade_inputs(model: mf.MultiGrade, x: torch.Tensor) -> torch.Tensor:
    """What the next grade reads: the newest frozen grade's features, or the encoded
    coordinates before grade 1 (no autograd: the grades below are frozen)."""
    with torch.no_grad():
        return model.features(x) if len(model) else model.encoding(x)


def train_grade(model, grade, x, residual, s: Setting) -> None:
    """``grade`` fitted to ``residual`` (the train targets minus the frozen grades) by Adam on
    shuffled minibatches whose inputs worker threads compute."""
    optimizer = torch.optim.Adam(grade.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed + len(model))
    loader = DataLoader(TensorDataset(x, residual), batch_size=s.batch, shuffle=True,
                        generator=gen)  # fmt: skip

    def prepare(xb, rb):
        return grade_inputs(model, xb), rb

    for _ in range(s.epochs):
        for h, target in threaded(loader, prepare, s.workers):
            # The mgdl_fast ops keep their own precision under autocast (fp32 here).
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = 0.5 * (grade(h) - target).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def custom_fit(image: mf.Image, s: Setting, checkpoint: Path) -> tuple[float, mf.MultiGrade]:
    """The custom loop: grade after grade, evaluated and checkpointed after each. Returns
    the test PSNR and the module."""
    task = mf.RegressionTask(image.pixels)
    (x, y), (x_test, y_test) = ((task.splits[n].x, task.splits[n].y) for n in ("train", "test"))
    config = EncodingConfig("fourier", s.frequencies, s.sigma, seed=s.seed)
    model = mf.MultiGrade(encoding=InputEncoding(config, in_dim=2))
    residual = y.clone()
    for k in range(s.grades):
        reads = model.encoding.out_dim if k == 0 else s.width
        grade = mf.Grade(mf.BlockShape(reads, s.width, s.layers, 1), seed=s.seed + k)
        with torch.inference_mode():
            start = 0.5 * (grade(grade_inputs(model, x)) - residual).square().mean().item()
        train_grade(model, grade, x, residual, s)
        model.append(grade.freeze())
        with torch.inference_mode():
            test_psnr = psnr(model(x_test), y_test)
        with torch.no_grad():
            residual = y - model(x)
        mf.save_checkpoint(checkpoint, model.to_model())
        print(f"grade {k + 1}: train loss {start:.4g} before, test PSNR {test_psnr:.2f} dB after")
    return test_psnr, model


def trainer_fit(image: mf.Image, s: Setting) -> float:
    """The same setting through ``mf.fit_regression`` (full-batch Adam, no early stop)."""
    model = mf.ModelConfig(grades=s.grades, width=s.width, layers=s.layers, encoding="fourier",
                           frequencies=s.frequencies, sigma=s.sigma)  # fmt: skip
    train = mf.TrainConfig(epochs=s.epochs, lr=s.lr, device="cpu", early_stopping=False)
    result = mf.fit_regression(image, model, train, progress=False)
    return result.records[-1].final["test_psnr"]


def run(s: Setting, out: Path) -> dict[str, float]:
    """Both fits of cameraman at ``s``; the checkpoint goes to ``out``. The test PSNRs, and
    the largest difference between the reloaded checkpoint's and the module's prediction."""
    image = cameraman(s.size)
    custom, model = custom_fit(image, s, out / "custom")
    loaded, _ = mf.load_checkpoint(out / "custom")
    x = mf.coordinate_grid(s.size, s.size).reshape(-1, 2)
    with torch.inference_mode():
        reload_error = (loaded.predict(x) - model(x)).abs().max().item()
    return {"custom_psnr": custom, "trainer_psnr": trainer_fit(image, s),
            "reload_error": reload_error}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Setting()).items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--out", type=Path, help="checkpoint folder (default: a temporary one)")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Setting(**args), out or Path(tmp))
    print(f"test PSNR: custom loop {result['custom_psnr']:.2f} dB, "
          f"trainer {result['trainer_psnr']:.2f} dB")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
