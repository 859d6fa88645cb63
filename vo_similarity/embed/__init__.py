"""Embedding stage: every image of a work directory as a unit vector (docs/learning.md).

``vo-similarity embed`` is :mod:`.cli` (light: imports nothing heavy); the work
is in :mod:`.embed` (``embed_workdir``, ``embed_images``, ``load_trained``).
"""
