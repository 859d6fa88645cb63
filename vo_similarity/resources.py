"""Files the package ships: the DaCHS resource directory, the SQL, the shipped model.

They are found through :mod:`importlib.resources`, so they are where the code
is, whether it runs from a checkout (an editable install reads the repository's
``resdir/`` and ``sql/``) or from an installed wheel (``pip install .`` copies
them into the package; see pyproject.toml).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["resource_dir", "shipped_model_files", "sql_files"]


def _path(package: str, *parts: str) -> Path:
    # DaCHS and PostgreSQL read these by file name, so they must be real files;
    # setuptools installs packages unzipped, where files() gives a Path.
    found = files(package).joinpath(*parts)
    if not isinstance(found, Path):
        raise TypeError(f"{package} is not installed as plain files ({found!r}); "
                           "install vo-similarity with pip (no zip import)")
    return found


def resource_dir(schema: str = "similarity") -> Path:
    """The folder of our DaCHS resource (``q.rd`` and what it serves)."""
    return _path("vo_similarity.resdir", schema)


def sql_files() -> list[Path]:
    """The ``*.sql`` files that publishing applies, in name order."""
    return sorted(_path("vo_similarity.sql").glob("*.sql"))


def shipped_model_files() -> tuple[Path, Path]:
    """``(weights, config)`` of the checkpoint shipped with the package."""
    data = _path("vo_similarity", "data")
    return data / "simclr_builtin.fp16.pt", data / "simclr_builtin.config.json"
