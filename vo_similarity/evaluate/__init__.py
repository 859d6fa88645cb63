"""Evaluation stage: precision@k, mAP and invariance beside baselines (docs/learning.md).

``vo-similarity evaluate`` is :mod:`.cli` (light: imports nothing heavy); the
work is in :mod:`.evaluate` (``evaluate_model``, the invariance transforms),
with the retrieval metrics in :mod:`.metrics` and the picture of query images
and their neighbours in :mod:`.grid`.
"""
