"""A per-image outlier score from the neighbour distances.

The score of an image is the mean L2 distance to its ``m`` nearest neighbours
(Angiulli & Pizzuti 2002, "Fast outlier detection in high dimensional
spaces", PKDD, use the sum, which ranks the same). It is large for images that
have no close relatives and small inside dense groups. A small ``m`` (default
10) measures how isolated an image is at the scale a user browses; ``m = k``
gives a smoother, more global score. Distances of unit vectors lie in [0, 2].
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_OUTLIER_NEIGHBOURS", "outlier_scores"]

#: Neighbours averaged by default.
DEFAULT_OUTLIER_NEIGHBOURS = 10


def outlier_scores(distances: np.ndarray, m: int = DEFAULT_OUTLIER_NEIGHBOURS,
                   *, block_size: int = 65536) -> np.ndarray:
    """Mean distance of each image to its ``m`` nearest neighbours.

    Args:
        distances: ``[N, k]`` neighbour distances, nearest first (may be a
            memory-mapped file; it is read ``block_size`` rows at a time).
        m: neighbours to average; at most ``k`` columns are used.

    Returns:
        ``[N]`` float32 scores.
    """
    if distances.ndim != 2 or distances.shape[1] == 0:
        raise ValueError(f"distances must be [N, k] with k >= 1, got shape {distances.shape}")
    if m < 1:
        raise ValueError(f"m must be at least 1, got {m}")
    m = min(m, distances.shape[1])
    out = np.empty(len(distances), dtype=np.float32)
    for start in range(0, len(distances), block_size):
        rows = distances[start:start + block_size, :m]
        out[start:start + block_size] = np.mean(rows, axis=1, dtype=np.float64)
    return out
