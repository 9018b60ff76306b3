"""Checkpoints: grade parameters in safetensors, the configuration beside them in JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..block import BlockParams, BlockShape
from ..errors import InputError
from ..train.model import MultiGradeModel

FORMAT = "mgdl_fast.checkpoint/1"


def save_checkpoint(path: str | Path, model: MultiGradeModel, config: dict) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` (tensors ``grade1``..``gradeK``) and ``<path>.json``.

    ``config`` is stored in the JSON (it must be JSON-serialisable) next to each grade's shape
    and output scale. Returns the two paths.
    """
    stem = Path(path).with_suffix("")
    tensors = {
        f"grade{k + 1}": p.flat.detach().cpu().contiguous() for k, p in enumerate(model.grades)
    }
    grades = [{**p.shape.to_dict(), "scale": s} for p, s in zip(model.grades, model.scales)]
    meta = {"format": FORMAT, "grades": grades, "config": config}
    tensor_path, json_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    save_file(tensors, str(tensor_path), metadata={"format": FORMAT})
    json_path.write_text(json.dumps(meta, indent=2))
    return tensor_path, json_path


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[MultiGradeModel, dict]:
    """Load a checkpoint from its ``.safetensors``/``.json`` path, stem or directory.

    Returns the model on ``device`` and the stored config. Raises InputError naming the problem
    for a missing, truncated or mismatched checkpoint.
    """
    stem = _resolve_stem(Path(path))
    json_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    for needed in (json_path, tensor_path):
        if not needed.is_file():
            raise InputError(f"checkpoint file not found: {needed}")
    try:
        meta = json.loads(json_path.read_text())
        tensors = load_file(str(tensor_path), device=str(device))
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise InputError(f"cannot read checkpoint {stem}: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{json_path} is not an mgdl_fast checkpoint (format {FORMAT})")
    model = MultiGradeModel()
    for k, grade in enumerate(meta.get("grades", [])):
        try:
            shape, scale = BlockShape.from_dict(grade), float(grade["scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{json_path}: grade {k + 1} is malformed ({exc})") from None
        flat = tensors.get(f"grade{k + 1}")
        if flat is None or flat.shape != (shape.num_params,):
            raise InputError(
                f"checkpoint {tensor_path}: grade {k + 1} tensor missing or of wrong size"
            )
        model.append(BlockParams(shape, flat.float()), scale)
    if not len(model):
        raise InputError(f"{json_path}: the checkpoint holds no grades")
    return model, meta.get("config", {})


def _resolve_stem(path: Path) -> Path:
    if path.is_dir():
        matches = sorted(path.glob("*.safetensors"))
        if len(matches) != 1:
            raise InputError(
                f"{path}: expected exactly one .safetensors checkpoint, found {len(matches)}"
            )
        return matches[0].with_suffix("")
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
