"""Tuning stage: hyperparameter search with Optuna (docs/learning.md).

``vo-similarity tune`` is :mod:`.cli` (light: imports nothing heavy); the
search is in :mod:`.tune` (``tune``, the search space ``suggest_config``).
"""
