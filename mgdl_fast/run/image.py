"""A run's image and its identity: a new run records where its image came from and its content
hash; a resumed run finds it again (given, at its recorded path, or relative to the run
directory) and must have the same content."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..io.images import default_image
from ..io.lazy import LazyImage, open_lazy
from .resolve import DEFAULT_IMAGE


def describe_image(image: LazyImage, source: str, run_dir: Path) -> dict:
    """The image part of a config: where it came from (as given, absolute, and relative to the
    run directory) and the content hash that identifies it on resume."""
    info = {"source": source, "sha256": image.sha256()}
    if source != DEFAULT_IMAGE:
        path = Path(source).resolve()
        info |= {"path": str(path), "path_from_run": os.path.relpath(path, run_dir.resolve())}
    return info


def load_run_image(saved: dict, given: str | None, run_dir: Path) -> LazyImage:
    """The image of a resumed run: ``given`` (it must be the same image), else found where the
    run recorded it (absolute path, then relative to the run directory)."""
    if saved.get("source") == DEFAULT_IMAGE and given is None:
        image = load_new_image(DEFAULT_IMAGE)
    elif given is not None:
        image = open_lazy(given)
    else:
        places: list[Path] = []
        if saved.get("path"):
            places.append(Path(saved["path"]))
        if saved.get("path_from_run"):
            places.append(run_dir / saved["path_from_run"])
        if saved.get("source"):
            places.append(Path(saved["source"]))
        # exists(), not is_file(): a .zarr image is a folder (the loader checks what it is).
        found = next((p for p in places if p.exists()), None)
        if found is None:
            listed = ", ".join(str(p) for p in places)
            raise InputError(f"--resume: cannot find the run's image (tried {listed}); pass it")
        image = open_lazy(found)
    if saved.get("sha256") and image.sha256() != saved["sha256"]:
        raise InputError(
            f"--resume: {image.source} is not the image this run was trained on (content "
            "hash differs)"
        )
    return image


def load_new_image(source: str) -> LazyImage:
    """The image of a new run, read lazily where its format allows (``io.lazy``)."""
    if source == DEFAULT_IMAGE:
        image = default_image()
        return LazyImage(image.pixels, image.source, image.notes)
    return open_lazy(source)


__all__ = ["describe_image", "load_new_image", "load_run_image"]
