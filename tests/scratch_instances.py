"""The scratch DaCHS instances this test session started.

Every fixture that starts a :class:`~vo_similarity.publish.scratch.ScratchDachs`
registers it here, so that the end-of-session check in ``tests/conftest.py``
fails the run when a process of any of them outlives the suite (instances of a
concurrent run are not ours to judge).
"""

from __future__ import annotations

from pathlib import Path

from vo_similarity.publish.scratch import ScratchDachs

#: base folders of the instances started by this session
STARTED: list[Path] = []


def register(scratch: ScratchDachs) -> ScratchDachs:
    """Remember ``scratch`` for the end-of-session check; returns it."""
    STARTED.append(scratch.base)
    return scratch
