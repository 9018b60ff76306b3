"""Checking what a run file holds, field by field, and writing JSON that strict parsers read.

Every file mgdl_fast reads back (the manifest, ``model.json``, a state's metadata, the run
record) is checked against its format with ``field``: a missing field or a value of the wrong
kind is one ``InputError`` naming the file and the field (``grades[1].scale``), never a
traceback and never a silent default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from ..errors import InputError

_MISSING = object()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "count": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "an integer >= 0",
    ),  # fmt: skip
    "number": (_number, "a finite number"),
    "positive": (lambda v: _number(v) and v > 0, "a finite number > 0"),
    "sha256": (
        lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
        "a SHA-256 (64 hex digits)",
    ),  # fmt: skip
}


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field(source, obj, key: str, kind: str, *, where: str = "", null: bool = False):
    """``obj[key]`` checked to be of ``kind`` (see KINDS; ``null``: None allowed too)."""
    name = f"{where}{key}"
    value = obj.get(key, _MISSING) if isinstance(obj, dict) else _MISSING
    if value is _MISSING:
        raise InputError(f"{source}: field {name} is missing")
    if value is None and null:
        return None
    check, words = KINDS[kind]
    if not check(value):
        raise InputError(f"{source}: field {name} must be {words}, got {_short(value)}")
    return value


def read_json(source, text: str) -> Any:
    """JSON from ``text`` (read from ``source``), one line on failure."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"cannot read {source}: not JSON ({exc})") from None


def finite(value: Any, where: str = "", found: list[str] | None = None) -> Any:
    """``value`` with every NaN or infinite float replaced by None; ``found`` collects where
    (``grades.0.final.test_psnr = inf``)."""
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append(f"{where.lstrip('.')} = {value}")
        return None
    if isinstance(value, dict):
        return {k: finite(v, f"{where}.{k}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v, f"{where}.{i}", found) for i, v in enumerate(value)]
    return value


def strict_dumps(value: Any, **options) -> str:
    """JSON any strict parser reads: NaN and infinities become null; when there were any, an
    object gains ``non_finite``, the list of where they were and what they were."""
    found: list[str] = []
    clean = finite(value, "", found)
    if found and isinstance(clean, dict):
        clean["non_finite"] = found
    return json.dumps(clean, allow_nan=False, **options)


__all__ = ["KINDS", "field", "finite", "read_json", "strict_dumps"]
