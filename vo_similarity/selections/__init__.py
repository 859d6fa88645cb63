"""Recorded selections: what astronomers marked similar or not (docs/selections.md).

The web page records them in the DaCHS service's ``similarity.selections``.
:mod:`.source` reads them (from the service through TAP, or from an exported
file) into :class:`Selections`; :mod:`.metrics` scores an embedding against
them (pairwise ranking accuracy and recall@k, with bootstrap intervals).
Light: imports neither torch nor a database driver.
"""

from vo_similarity.selections.metrics import paired_improvement, per_query_scores, selection_scores
from vo_similarity.selections.source import Selections, read_selections, write_selections

__all__ = ["Selections", "paired_improvement", "per_query_scores", "read_selections",
           "selection_scores", "write_selections"]
