"""Learning stage: SimCLR training, embedding, evaluation and tuning (docs/learning.md).

Light command-line modules (``train_cli``, ``embed_cli``, ``evaluate_cli``,
``tune_cli``) import nothing heavy; the work is in ``train``, ``embed``,
``evaluate`` and ``tune``.
"""
