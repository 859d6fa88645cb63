"""A folder of image files as a source of :class:`ImageInput` records."""

from __future__ import annotations

from pathlib import Path

from vo_similarity.ingest.inputs import ImageInput

__all__ = ["scan_folder"]


def scan_folder(folder: str | Path) -> list[ImageInput]:
    """Every regular file below ``folder`` (recursively, hidden ones skipped), sorted.

    Files are not filtered by name: what is no image gets its line in the
    ingest report, so nothing is left out silently. The ``obs_id`` is the
    folder's own name followed by the file's path relative to it
    (``survey/field1/cube.fits``), stable across reruns; position, target and
    the rest come later from the file's header.

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    inputs = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        inputs.append(ImageInput(path=path, obs_id=f"{root.name}/{rel.as_posix()}"))
    return inputs
