"""A run's manifest, ``manifest.json``: the commit point of its directory.

Format ``mgdl_fast.manifest/1``::

    {"format": "mgdl_fast.manifest/1",
     "files": {"<run-relative name>": {"sha256": "<64 hex>", "bytes": <int>}, ...},
     "state": "state-<NNNNNN>.safetensors, listed in files" | null,
     "config": {"task": {...}, "preset": "<name>", "model": {...}, "train": {...},
                "image": {...}, ...} | null}

The first manifest (no files, no state) is written before any other run file, with the
configuration, so a run stopped at any point can be resumed: from its state when it has one,
from grade 1 with its configuration otherwise. Manifests written before version 1 have no
``format`` field and no ``config``; they are read as version 0.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError
from . import ownership
from .schema import field, read_json

MANIFEST = "manifest.json"
FORMAT = "mgdl_fast.manifest/1"
# The state files a run writes (``RunDirectory.save_state``), numbered from 1.
STATE_NAME = re.compile(r"state-[0-9]{6,}\.safetensors")
# The parts of a configuration a resume reads, and their kinds (``schema.KINDS``).
CONFIG_PARTS = {"task": "dict", "preset": "str", "model": "dict", "train": "dict", "image": "dict"}


def new_manifest(config: dict | None = None) -> dict:
    return {"format": FORMAT, "files": {}, "state": None, "config": config}


def validate(source, data) -> dict:
    """The manifest ``data`` read from ``source``, checked field by field (one line naming
    the field on the first problem)."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: not a manifest (a JSON object with files and state)")
    if "format" in data and data["format"] != FORMAT:
        raise InputError(f"{source}: field format must be {FORMAT!r}, got {data['format']!r}")
    files = field(source, data, "files", "dict")
    for name, entry in files.items():
        ownership.check_name(name, f"{source}: field files")
        field(source, entry, "sha256", "sha256", where=f"files.{name}.")
        field(source, entry, "bytes", "count", where=f"files.{name}.")
    state = field(source, data, "state", "str", null=True)
    if state is not None:
        if not STATE_NAME.fullmatch(state):
            raise InputError(
                f"{source}: field state must name a state-NNNNNN.safetensors file, got {state!r}"
            )
        if state not in files:
            raise InputError(f"{source}: field state names {state}, which files does not list")
    config = field(source, data, "config", "dict", null=True) if "config" in data else None
    return {"format": FORMAT, "files": files, "state": state, "config": config}


def check_config(source, config: dict) -> dict:
    """``config`` (the field of the manifest at ``source`` a resume starts from) checked to hold
    the parts a resume reads; the run directory itself treats it as opaque."""
    for part, kind in CONFIG_PARTS.items():
        field(source, config, part, kind, where="config.")
    return config


def read_manifest(root: Path) -> dict:
    """The manifest of the run in ``root`` (never read through a link), validated."""
    path = ownership.inside(root, MANIFEST)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return validate(path, read_json(path, text))


__all__ = ["FORMAT", "MANIFEST", "check_config", "new_manifest", "read_manifest", "validate"]
