"""Command-line options made from the run description's fields (``run.config``): one argument
group per section, each option's help and default read from its field, so that a default is
written once. Every option parses to ``None`` when not given, so a command knows what was given
(a resume checks exactly those)."""

from __future__ import annotations

import argparse
import re
from dataclasses import MISSING, Field, fields
from typing import Any

from ..run.config import SECTIONS
from ..run.resolve import defaults_for
from ..tasks import TASKS

TITLES = {
    "input": "input",
    "task": "task (denoise and deblur: PROTOCOL 3)",
    "model": "model",
    "training": "training",
    "resources": "resources",
    "outputs": "outputs",
}
# Fields whose default is the task's and preset's (tasks.fit_defaults key).
TASK_DEFAULTS = {
    ("model", "grades"): "grades", ("model", "width"): "width", ("model", "layers"): "layers",
    ("model", "encoding"): "encoding", ("model", "frequencies"): "frequencies",
    ("model", "sigma"): "sigma", ("training", "epochs"): "epochs", ("training", "lr"): "lr",
    ("training", "record_every"): "record_every", ("training", "test_every"): "test_every",
}  # fmt: skip


def number_list(kind: type):
    """argparse type: one number, or a comma list of them (one per grade)."""
    noun = {"int": "an integer", "float": "a number"}[kind.__name__]

    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {noun} or a comma list of them, got {text!r}"
            ) from None
        return values[0] if len(values) == 1 else values

    parse.__name__ = f"{kind.__name__} list"
    return parse


def grades_value(text: str):
    """argparse type of --grades: an integer, or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer or auto, got {text!r}") from None


def seconds(text: str) -> float:
    """argparse type of a duration: 90, 90s, 1.5m or 2h."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[-+]?\d+)?)\s*(s|m|h)?\s*", text.lower())
    try:
        value = float(match.group(1)) if match else float("nan")
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"a positive duration like 60s or 2m, got {text!r}")
    return value * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2) if match else None]


PARSERS = {"int": int, "float": float, "str": str, "seconds": seconds, "grades": grades_value,
           "ints": number_list(int), "floats": number_list(float)}  # fmt: skip


def flag_of(f: Field) -> str:
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    prefix = "--no-" if f.metadata.get("negate") else "--"
    return prefix + f.name.replace("_", "-")


def _show(value: Any) -> str:
    if value is None:
        return "the record interval"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def task_default(key: str) -> str:
    """What the tasks' defaults give ``key``, per task and preset, compactly."""
    by_value: dict[str, dict[str, list[str]]] = {}
    for task, spec in TASKS.items():
        for preset in spec.epochs:
            value = _show(defaults_for(task, "mgdl", preset)[key])
            by_value.setdefault(value, {}).setdefault(task, []).append(preset)
    if len(by_value) == 1:
        return next(iter(by_value))
    parts = []
    for value, tasks in by_value.items():
        where = [t if presets == list(TASKS[t].epochs) else f"{t} {'/'.join(presets)}"
                 for t, presets in tasks.items()]  # fmt: skip
        parts.append(f"{value} for {', '.join(where)}")
    return "; ".join(parts)


def _help(section: str, f: Field) -> str:
    text = f.metadata["help"]
    if (section, f.name) in TASK_DEFAULTS:
        default = task_default(TASK_DEFAULTS[(section, f.name)])
    elif f.metadata.get("negate") and f.default is True:
        return f"{text} (on unless {flag_of(f)} is given)".replace("%", "%%")
    elif f.default is not MISSING and f.default is not None:
        default = _show(f.default)
    else:
        return text.replace("%", "%%")
    return f"{text} (default: {default})".replace("%", "%%")


def add_field(group, section: str, f: Field) -> None:
    """One option for field ``f`` of ``section`` (dest ``section.name``, default None)."""
    meta, dest = f.metadata, f"{section}.{f.name}"
    common: dict[str, Any] = {"dest": dest, "default": None, "help": _help(section, f)}
    if meta["kind"] not in ("bool", "crop") and not meta.get("choices"):
        common["metavar"] = f.name.upper()
    if meta["kind"] == "bool":
        const = not meta.get("negate")
        group.add_argument(flag_of(f), action="store_const", const=const, **common)
    elif meta["kind"] == "crop":
        group.add_argument(flag_of(f), nargs=2, type=int, metavar=meta.get("metavar"), **common)
    else:
        group.add_argument(flag_of(f), type=PARSERS[meta["kind"]], choices=meta.get("choices"),
                           **common)  # fmt: skip


def add_run_options(parser, positional: tuple[str, str] = ("input", "image")) -> None:
    """Every field of the run description as an option, grouped by section; ``positional``
    is the one field given as a positional argument."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(TITLES[section])
        for f in fields(cls):
            if (section, f.name) == positional:
                group.add_argument(f.name, nargs="?", default=None, metavar=f.name.upper(),
                                   help=_help(section, f))  # fmt: skip
                continue
            add_field(group, section, f)


def given(args: argparse.Namespace, positional: tuple[str, str] = ("input", "image")) -> dict:
    """The run options given on the command line, ``{section: {field: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if value is None:
            continue
        if dest == positional[1]:
            out.setdefault(positional[0], {})[positional[1]] = value
        elif "." in dest and dest.split(".")[0] in SECTIONS:
            section, name = dest.split(".", 1)
            out.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
    return out


__all__ = ["add_run_options", "given", "grades_value", "number_list", "seconds"]
