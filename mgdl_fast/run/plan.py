"""A run's memory plan: its peak memory estimated before anything is allocated (from what the
task and the backends declare: ``train.memory``; nothing is bound or launched), streaming and
the feature store chosen when they are ``auto``, and a run above ``max_memory`` refused in one
line naming the settings that would fit. And the task the plan settled on."""

from __future__ import annotations

import os

import torch

from ..encoding import make_encoding
from ..errors import InputError
from ..io.lazy import LazyImage
from ..tasks import TASKS
from ..train import ModelConfig, TrainConfig
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
from .config import ResourcesSection

STORE_WORDS = {"disk": "features on disk", "host": "features in host memory"}


def ranks() -> int:
    """The number of ranks a torchrun launch starts (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def problem(config: dict, image: LazyImage, train_cfg: TrainConfig, device) -> Problem:
    """The memory model's view of a configured run."""
    model_cfg = ModelConfig(**config["model"])
    encoding = make_encoding(model_cfg.encoding_config(), 2)
    shapes = grade_shapes(model_cfg, encoding.out_dim if encoding else 2, image.channels)
    spec = TASKS[config["task"]["name"]]
    stream = train_cfg.stream and spec.make_streamed is not None
    return Problem(
        height=image.height, width=image.width, channels=image.channels, terms=spec.memory,
        shapes=tuple(shapes), cache_bytes=train_cfg.feature_dtype(device).itemsize,
        precision=train_cfg.precision or "auto", backend=train_cfg.backend, device=device,
        stream=stream, feature_store=train_cfg.feature_store, chunk_size=train_cfg.chunk_size,
        load_image=image.lazy and not stream, ranks=ranks(),
    )  # fmt: skip


def plan(config: dict, image: LazyImage, resources: ResourcesSection, device) -> Estimate:
    """Settle ``config['train']``'s stream and feature store, record the estimate in
    ``config['memory']`` and return it; raises InputError when the run does not fit."""
    limit = memory_limit(resources.max_memory, device)
    baseline = baseline_bytes()
    train = config["train"]
    stream_given = resources.stream != "auto"
    store_given = resources.feature_store != "auto"
    if stream_given:
        train["stream"] = resources.stream == "on"
    if store_given:
        train["feature_store"] = resources.feature_store
    options = [dict(train)]
    if not stream_given:
        options.append({**train, "stream": True})
    if not store_given:
        off_device = "host" if device.type == "cuda" else "disk"
        options += [{**o, "feature_store": off_device} for o in list(options)]
    first = None
    for option in options:
        cfg = TrainConfig(**option)
        candidate = problem(config, image, cfg, device)
        found = estimate(candidate, baseline)
        first = first or (candidate, found)
        if found.total <= limit:
            train.update(stream=cfg.stream, feature_store=cfg.feature_store)
            config["memory"] = {"estimate_bytes": found.total, "limit_bytes": limit,
                                "parts": dict(found.parts)}  # fmt: skip
            return found
    assert first is not None
    wanted, found = first
    fits = suggestions(wanted, baseline, limit)
    hint = f"settings that would fit: {', '.join(fits)}" if fits else "no setting here fits"
    raise InputError(
        f"estimated peak memory {format_bytes(found.total)} per rank is above --max-memory "
        f"{format_bytes(limit)}; {hint} (or raise --max-memory)"
    )


def make_task(config: dict, image: LazyImage, train_cfg: TrainConfig, device: torch.device):
    """The task and objective: streamed (read band by band) where the plan chose it and the
    task has a streamed form; every other run loads the image."""
    spec = TASKS[config["task"]["name"]]
    if train_cfg.stream and spec.make_streamed is not None:
        return spec.make_streamed(image, device)
    return spec.make(image.load(), config["task"], train_cfg, device)


def memory_limit(text: str | None, device: torch.device) -> int:
    if text is None:
        return default_limit(device)
    if any(word in text.lower() for word in ("nan", "inf")):
        raise InputError(f"--max-memory must be a finite size (e.g. 6G), got {text!r}")
    try:
        return parse_bytes(text)
    except (ValueError, OverflowError) as exc:
        raise InputError(f"--max-memory: {exc}") from None


def describe(found: Estimate, config: dict) -> str:
    """The plan in one line: the estimate and how the run keeps to it."""
    train = config["train"]
    store = train.get("feature_store")
    how = [
        part
        for part, on in (("streamed", train.get("stream")), (STORE_WORDS.get(store, ""), store))
        if on and part
    ]
    suffix = f"; {', '.join(how)}" if how else ""
    limit = config["memory"]["limit_bytes"]
    return f"estimated peak memory {found.describe()} of {format_bytes(limit)} allowed{suffix}"


__all__ = ["describe", "make_task", "memory_limit", "plan", "problem", "ranks"]
