"""Model checkpoints: grade parameters in safetensors, the configuration beside them in JSON.

Both files are written atomically (io/atomic.py). Loading refuses, with one line each: missing
or unreadable files, another format, grades whose shapes do not chain, tensors of the wrong
size, NaN or infinite weights, a device that is not there, and files that do not match the
manifest of the run directory they sit in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..block import BlockParams, BlockShape
from ..encoding import Encoding, EncodingConfig
from ..errors import InputError
from ..train.config import resolve_device
from ..train.model import MultiGradeModel
from . import atomic
from .manifest import MANIFEST, read_manifest
from .ownership import RECORD
from .schema import field

FORMAT = "mgdl_fast.checkpoint/1"
SUFFIXES = (".safetensors", ".json")


def checkpoint_stem(path: str | Path) -> Path:
    """``path`` without a checkpoint suffix: ``x.safetensors`` and ``x.json`` name ``x``;
    any other name (``x.v2``) is kept whole."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in SUFFIXES else path


def _with(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def encoding_meta(model: MultiGradeModel) -> dict | None:
    """How a checkpoint records the model's input encoding (its frequencies are a tensor)."""
    if model.encoding is None:
        return None
    return {**model.encoding.config.to_dict(), "in_dim": model.encoding.in_dim}


def model_tensors(model: MultiGradeModel) -> dict[str, torch.Tensor]:
    """``grade1``..``gradeK`` and, with an encoding, its frequencies ``encoding``."""
    tensors = {f"grade{k + 1}": p.flat for k, p in enumerate(model.grades)}
    if model.encoding is not None:
        tensors["encoding"] = model.encoding.matrix
    return {name: t.detach().cpu().contiguous() for name, t in tensors.items()}


def checkpoint_contents(model: MultiGradeModel, config: dict) -> tuple[dict, str]:
    """What a checkpoint of ``model`` holds: its tensors (``grade1``..``gradeK`` and the
    encoding's frequencies) and the text of its ``.json`` (each grade's shape and output scale,
    the encoding, and ``config``, which must be JSON-serialisable: checked here, before
    anything is written)."""
    grades = [{**p.shape.to_dict(), "scale": s} for p, s in zip(model.grades, model.scales)]
    meta = {"format": FORMAT, "grades": grades, "encoding": encoding_meta(model), "config": config}
    try:
        text = json.dumps(meta, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"checkpoint config is not JSON-serialisable: {exc}") from None
    return model_tensors(model), text


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(tensors, str(path), metadata={"format": FORMAT})


def save_checkpoint(
    path: str | Path, model: MultiGradeModel, config: dict | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` (``checkpoint_contents``; ``config``
    default ``{}``), each atomically. Returns the two paths."""
    stem = checkpoint_stem(path)
    tensors, text = checkpoint_contents(model, {} if config is None else config)
    tensor_path, json_path = _with(stem, ".safetensors"), _with(stem, ".json")
    atomic.atomic_write(tensor_path, lambda tmp: write_tensors(tmp, tensors))
    atomic.write_text(json_path, text)
    return tensor_path, json_path


def _resolve_stem(path: Path) -> Path:
    """The checkpoint stem of a path: a run directory's ``model`` (it must have finished a
    grade), the one visible ``*.safetensors`` of another folder (hidden files, temporary
    files among them, and state files are not checkpoints), or the path without its
    suffix."""
    if path.is_dir():
        if (path / MANIFEST).is_file() or (path / RECORD).is_file():
            if not (path / "model.safetensors").is_file():
                raise InputError(f"{path}: the run has not finished a grade yet (no model)")
            return path / "model"
        matches = sorted(path.glob("[!.]*.safetensors"))
        matches = [m for m in matches if not m.name.startswith("state")]
        if len(matches) != 1:
            raise InputError(
                f"{path}: expected exactly one .safetensors checkpoint, found {len(matches)}"
            )
        return matches[0].with_suffix("")
    return checkpoint_stem(path)


def verify_against_manifest(files: list[Path]) -> None:
    """When ``files`` sit in a run directory, their checksums must be those of its manifest
    (and a run with a record must list them)."""
    root = files[0].parent
    if not (root / MANIFEST).is_file():
        return
    listed = read_manifest(root)["files"]
    recorded = (root / RECORD).is_file()  # a run that keeps a record lists every model file
    for path in files:
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link; a run's files are read directly")
        entry = listed.get(path.name)
        if entry is None and recorded:
            raise InputError(
                f"{path} is not in {root / MANIFEST} yet (the run stopped before committing "
                "it); resume the run to finish it"
            )
        if entry is not None and atomic.sha256(path) != entry["sha256"]:
            raise InputError(
                f"{path} does not match {root / MANIFEST} (a write was interrupted or the file "
                "was changed); resume the run to rewrite it"
            )


SHAPE_FIELDS = ("in_dim", "width", "hidden_layers", "out_dim")


def model_from_tensors(
    grades: list[dict], tensors: dict[str, torch.Tensor], source, encoding: dict | None = None
) -> MultiGradeModel:
    """The model of ``grades`` (shape and scale each) from ``gradeK`` tensors and, when
    recorded, its input ``encoding`` (config and in_dim; frequencies in ``tensors``)."""
    model = MultiGradeModel(encoding=_encoding(encoding, tensors, source))
    for k, grade in enumerate(grades):
        where = f"grades[{k}]."
        dims = {n: field(source, grade, n, "int", where=where) for n in SHAPE_FIELDS}
        scale = float(field(source, grade, "scale", "number", where=where))
        try:
            shape = BlockShape(**dims)
        except InputError as exc:
            raise InputError(f"{source}: grade {k + 1} is malformed ({exc})") from None
        flat = tensors.get(f"grade{k + 1}")
        if flat is None or flat.shape != (shape.num_params,):
            raise InputError(f"{source}: grade {k + 1} tensor missing or of wrong size")
        if not torch.isfinite(flat).all():
            raise InputError(f"{source}: grade {k + 1} has NaN or infinite weights")
        try:
            model.append(BlockParams(shape, flat.float()), scale)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}") from None
    if not len(model):
        raise InputError(f"{source}: the checkpoint holds no grades")
    if model.encoding is not None and model.encoding.out_dim != model.grades[0].shape.in_dim:
        raise InputError(f"{source}: the encoding does not feed grade 1")
    return model


def _encoding(meta: dict | None, tensors: dict[str, torch.Tensor], source) -> Encoding | None:
    if not meta:
        return None
    try:
        config = EncodingConfig(**{k: v for k, v in meta.items() if k != "in_dim"})
        return Encoding(config, int(meta["in_dim"]), tensors["encoding"])
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise InputError(f"{source}: the input encoding is malformed ({exc})") from None


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[MultiGradeModel, dict]:
    """Load a checkpoint from its ``.safetensors``/``.json`` path, stem or directory.

    Returns the model on ``device`` and the stored config. Raises InputError naming the problem
    (see the module docstring).
    """
    device = resolve_device(str(device))
    stem = _resolve_stem(Path(path))
    json_path, tensor_path = _with(stem, ".json"), _with(stem, ".safetensors")
    for needed in (json_path, tensor_path):
        if not needed.is_file():
            raise InputError(f"checkpoint file not found: {needed}")
    verify_against_manifest([tensor_path, json_path])
    try:
        meta = json.loads(json_path.read_text())
        tensors = load_file(str(tensor_path), device="cpu")
    except Exception as exc:  # json, OS and safetensors errors (SafetensorError and others)
        raise InputError(f"cannot read checkpoint {stem}: {atomic.reason(exc)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{json_path} is not an mgdl_fast checkpoint (format {FORMAT})")
    grades = field(json_path, meta, "grades", "list")
    encoding = field(json_path, meta, "encoding", "dict", null=True)
    config = field(json_path, meta, "config", "dict")
    model = model_from_tensors(grades, tensors, json_path, encoding)
    return model.to(device), config
