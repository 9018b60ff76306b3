"""The fit command's memory plan: estimate the run's peak memory before anything is allocated,
choose streaming and the feature store when they are ``auto``, and refuse, in one line naming
the settings that would fit, a run above ``--max-memory`` (``train.memory``)."""

from __future__ import annotations

import os
import sys

from ..encoding import make_encoding
from ..errors import InputError
from ..io.lazy import LazyImage
from ..tasks import TASKS
from ..tasks.regression import RegressionObjective, StreamedRegressionTask
from ..train import ModelConfig, TrainConfig
from ..train.config import FEATURE_STORES
from ..train.memory import (
    Estimate,
    Problem,
    baseline_bytes,
    default_limit,
    estimate,
    format_bytes,
    parse_bytes,
    suggestions,
)
from ..train.trainer import grade_shapes

STREAM_CHOICES = ("auto", "on", "off")
STORE_WORDS = {"disk": "features on disk", "host": "features in host memory"}


def add_memory_options(p) -> None:
    g = p.add_argument_group("memory")
    g.add_argument(
        "--stream",
        choices=STREAM_CHOICES,
        help="bounded-memory grades: the image read lazily, coordinates made per chunk, "
        "gradients summed over chunks (auto, the default: when the run would not fit otherwise)",
    )
    g.add_argument(
        "--feature-store",
        choices=("auto", *FEATURE_STORES),
        help="where cached features live: memory, disk (files in the run directory) or host "
        "(pinned host memory for a CUDA run); auto: memory if it fits, else disk (CPU) or host",
    )
    g.add_argument(
        "--max-memory",
        help="refuse a run whose estimated peak memory per rank is above this (e.g. 6G; "
        "default: the available memory minus 10%%, at least 1 GB)",
    )


def ranks() -> int:
    """The number of ranks a torchrun launch starts (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def problem(config: dict, image: LazyImage, train_cfg: TrainConfig) -> Problem:
    """The memory model's view of a configured run."""
    model_cfg = ModelConfig(**config["model"])
    encoding = make_encoding(model_cfg.encoding_config(), 2)
    shapes = grade_shapes(model_cfg, encoding.out_dim if encoding else 2, image.channels)
    device = train_cfg.torch_device()
    stream = train_cfg.stream and config["task"]["name"] == "regression"
    return Problem(
        height=image.height, width=image.width, channels=image.channels,
        task=config["task"]["name"], shapes=tuple(shapes),
        cache_bytes=train_cfg.feature_dtype(device).itemsize,
        precision=train_cfg.precision or "auto",
        backend=train_cfg.backend, device=device, stream=stream,
        feature_store=train_cfg.feature_store, chunk_size=train_cfg.chunk_size,
        load_image=image.lazy and not stream, ranks=ranks(),
    )  # fmt: skip


def plan(config: dict, image: LazyImage, args) -> Estimate:
    """Settle ``config['train']``'s stream and feature store, record the estimate in
    ``config['memory']`` and return it; raises InputError when the run does not fit."""
    limit = _limit(args, TrainConfig(**config["train"]).torch_device())
    baseline = baseline_bytes()
    train = config["train"]
    stream_given = args.stream not in (None, "auto")
    store_given = args.feature_store not in (None, "auto")
    if stream_given:
        train["stream"] = args.stream == "on"
    if store_given:
        train["feature_store"] = args.feature_store
    options = [dict(train)]
    if not stream_given:
        options.append({**train, "stream": True})
    if not store_given:
        off_device = "host" if TrainConfig(**train).torch_device().type == "cuda" else "disk"
        options += [{**o, "feature_store": off_device} for o in list(options)]
    first = None
    for option in options:
        cfg = TrainConfig(**option)
        candidate = problem(config, image, cfg)
        found = estimate(candidate, baseline)
        first = first or (candidate, found)
        if found.total <= limit:
            train.update(stream=cfg.stream, feature_store=cfg.feature_store)
            config["memory"] = _record(found, limit)
            return found
    assert first is not None
    wanted, found = first
    fits = suggestions(wanted, baseline, limit)
    hint = f"settings that would fit: {', '.join(fits)}" if fits else "no setting here fits"
    raise InputError(
        f"estimated peak memory {format_bytes(found.total)} per rank is above --max-memory "
        f"{format_bytes(limit)}; {hint} (or raise --max-memory)"
    )


def make_task(config: dict, image: LazyImage, train_cfg: TrainConfig, device):
    """The task and objective: a streamed regression reads the image band by band; every
    other run loads it."""
    name = config["task"]["name"]
    if train_cfg.stream and name == "regression":
        task = StreamedRegressionTask(image, device=device)
        return task, RegressionObjective(task)
    return TASKS[name].make(image.load(), config["task"], train_cfg, device)


def _limit(args, device) -> int:
    if args.max_memory is None:
        return default_limit(device)
    text = args.max_memory
    if any(word in text.lower() for word in ("nan", "inf")):
        raise InputError(f"--max-memory must be a finite size (e.g. 6G), got {text!r}")
    try:
        return parse_bytes(text)
    except (ValueError, OverflowError) as exc:
        raise InputError(f"--max-memory: {exc}") from None


def _record(found: Estimate, limit: int) -> dict:
    return {"estimate_bytes": found.total, "limit_bytes": limit, "parts": dict(found.parts)}


def report(found: Estimate, config: dict, quiet: bool) -> None:
    """One note line: the estimate and how the run keeps to it."""
    if quiet:
        return
    train = config["train"]
    how = ", ".join(
        part
        for part, on in (
            ("streamed", train.get("stream")),
            (
                STORE_WORDS.get(train.get("feature_store"), ""),
                train.get("feature_store") != "memory",
            ),
        )
        if on
    )
    suffix = f"; {how}" if how else ""
    limit = config["memory"]["limit_bytes"]
    print(
        f"mgdl-fast: note: estimated peak memory {found.describe()} of {format_bytes(limit)} "
        f"allowed{suffix}",
        file=sys.stderr,
    )


__all__ = ["add_memory_options", "make_task", "plan", "problem", "ranks", "report"]
