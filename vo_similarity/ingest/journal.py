"""The ingest journal: one committed result per input, so a killed run resumes.

Each input's outcome (its preprocessed pixels and preview, or the reason it was
rejected) is written to its own small ``.npz`` file, first under a temporary
name and then renamed into place (``os.replace`` is atomic on POSIX), so an
entry is either complete or absent. The entry's name is a hash of everything
that determines the outcome: the input's ``obs_id``, its file's absolute path
and content (size and modification time for large files), and the
preprocessing settings. A rerun therefore
reuses what is still valid and redoes what changed; the final work-directory
files are assembled from the journal afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vo_similarity.workdir import atomic_write

__all__ = ["CONTENT_HASH_BYTES", "Journal", "JournalEntry"]

#: Files up to this size are identified by a hash of their content.
CONTENT_HASH_BYTES = 64 * 2**20


@dataclass(frozen=True)
class JournalEntry:
    """One input's committed outcome.

    Attributes:
        facts: header facts (:class:`~vo_similarity.ingest.raw_image.HeaderFacts`
            as a dict) for an accepted input, ``{}`` for a rejected one.
        reason: why the input was rejected, ``""`` if accepted.
        pixels: float16 ``(S, S)`` model input, ``None`` if rejected.
        preview_png: the preview as PNG file content, ``None`` if rejected.
    """

    facts: dict[str, Any]
    reason: str = ""
    pixels: np.ndarray | None = None
    preview_png: bytes | None = None

    @property
    def accepted(self) -> bool:
        return not self.reason


class Journal:
    """Committed per-input outcomes below one folder.

    Args:
        root: the journal folder (created on first write).
        settings: everything besides the input file that changes the outcome
            (preprocessing configuration, channel range); part of every key.
    """

    def __init__(self, root: Path, settings: dict[str, Any]):
        self.root = Path(root)
        self._settings = json.dumps(settings, sort_keys=True, default=str)

    def key(self, obs_id: str, path: Path) -> str:
        """The entry name of an input: a hash of its identity, file state and settings.

        The file state is a hash of its content for files up to
        :data:`CONTENT_HASH_BYTES` (so a rewritten but identical file is no
        change), its size and modification time for larger ones.
        """
        path = Path(path).resolve()
        try:
            st = path.stat()
            if st.st_size <= CONTENT_HASH_BYTES:
                state = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
            else:
                state = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            state = "missing"
        text = "\n".join((obs_id, str(path), state, self._settings))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self._file(key).is_file()

    def put(self, key: str, entry: JournalEntry) -> None:
        """Commit ``entry`` atomically under ``key``."""
        final = self._file(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps({"facts": entry.facts, "reason": entry.reason},
                                        default=_json_default)),
        }
        if entry.pixels is not None:
            arrays["pixels"] = entry.pixels
            arrays["preview_png"] = np.frombuffer(entry.preview_png, np.uint8)
        with atomic_write(final) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())

    def get(self, key: str, *, arrays: bool = True) -> JournalEntry:
        """Load the entry ``key``; with ``arrays=False`` only its facts and reason."""
        with np.load(self._file(key), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            pixels = z["pixels"] if arrays and "pixels" in z.files else None
            preview = z["preview_png"].tobytes() if arrays and "preview_png" in z.files else None
        return JournalEntry(meta["facts"], meta["reason"], pixels, preview)

    def prune(self, keep: set[str]) -> int:
        """Delete entries (and leftover temporary files) not in ``keep``; return how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for file in self.root.glob("*/*"):
            if file.name.endswith(".npz") and file.stem in keep:
                continue
            file.unlink(missing_ok=True)
            removed += 1
        return removed


def _json_default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")
