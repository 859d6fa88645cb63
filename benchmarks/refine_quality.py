"""How often the web page's refinement from precomputed lists finds what the exact search finds.

The page refines (``api/refine``, docs/web.md) by ranking the union of the
chosen images' precomputed neighbour lists (k each) with Rocchio's query
(``method=candidates``), instead of ranking every embedding
(``method=exact``).  This script measures the agreement of the two: recall of
the exact top n among the candidates' top n, over many refinements.

Embeddings: the built-in sample's real ones (``--workdir``, default the
demo's), and a larger collection modelled on them: a mixture on the unit
sphere with as many classes and the same within-class and between-class
cosine spread as the built-in sample's categories (measured here, printed), so
that N can be far above k.  A refinement marks ``--similar`` images of one
class as similar and one image of another class as not similar, as a user
refining towards a class would.

    .venv/bin/python benchmarks/refine_quality.py [--n 100000] [--trials 200]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vo_similarity.publish.search_kernel import build_query, top_n

log = logging.getLogger("refine_quality")


def knn_lists(vectors: np.ndarray, rows: np.ndarray, k: int) -> list[np.ndarray]:
    """Exact top-k rows of each of ``rows`` (itself left out), as the neighbour stage."""
    return [top_n(vectors, vectors[r], k, np.array([r]))[0] for r in rows]


def refine_both(vectors: np.ndarray, similar: np.ndarray, rejected: np.ndarray, k: int,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidates' top n, exact top n) of one refinement."""
    query = build_query(vectors.shape[1], [], [], vectors[similar], vectors[rejected], 0.5)
    chosen = np.concatenate([similar, rejected])
    cand = np.setdiff1d(np.unique(np.concatenate(knn_lists(vectors, similar, k))), chosen)
    scores = vectors[cand] @ query
    by_candidates = cand[np.lexsort((cand, -scores))[:n]]
    by_exact = top_n(vectors, query, n, chosen)[0]
    return by_candidates, by_exact


def class_spread(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cosine within a class and between classes."""
    same, other = [], []
    for c in np.unique(labels):
        a = vectors[labels == c]
        b = vectors[labels != c]
        if len(a) < 2:
            continue
        s = a @ a.T
        same.append(s[np.triu_indices(len(a), 1)].mean())
        other.append((a @ b.T).mean())
    return float(np.mean(same)), float(np.mean(other))


def mixture(n: int, dim: int, n_classes: int, within: float, between: float,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in ``n_classes`` classes with the given mean cosines.

    centre_c = normalise(sqrt(b)·g + sqrt(1-b)·u_c) gives centres of mutual
    cosine ≈ b; x = normalise(sqrt(w')·centre + sqrt(1-w')·noise) gives
    within-class cosine ≈ w' (for large dim), so w' = within and the centre
    cosine b is chosen so that between-class cosine ≈ between.
    """
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(dim)
    g /= np.linalg.norm(g)
    u = rng.standard_normal((n_classes, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    b = np.clip(between / max(within, 1e-6), 0.0, 0.999)
    centres = np.sqrt(b) * g + np.sqrt(1 - b) * u
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, n)
    noise = rng.standard_normal((n, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = np.sqrt(within) * centres[labels] + np.sqrt(1 - within) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def trial_recalls(vectors, labels, k, n, n_similar, trials, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    recalls, precision = [], {"candidates": [], "exact": []}
    classes = [c for c in np.unique(labels) if (labels == c).sum() > n_similar]
    for _ in range(trials):
        c = rng.choice(classes)
        similar = rng.choice(np.flatnonzero(labels == c), n_similar, replace=False)
        rejected = rng.choice(np.flatnonzero(labels != c), 1)
        got, want = refine_both(vectors, similar, rejected, k, n)
        recalls.append(len(np.intersect1d(got, want)) / len(want))
        precision["candidates"].append(np.mean(labels[got] == c))
        precision["exact"].append(np.mean(labels[want] == c))
    return np.array(recalls), {m: float(np.mean(p)) for m, p in precision.items()}


def report(name: str, found: tuple[np.ndarray, dict]) -> None:
    recalls, precision = found
    lo, hi = np.percentile(recalls, [5, 50])
    print(f"{name:<36} recall of exact top n: mean {recalls.mean():.3f}, median {hi:.3f}, "
          f"5th pct {lo:.3f}; same class as the similar ones: candidates "
          f"{precision['candidates']:.3f}, exact {precision['exact']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("work/builtin"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--n", type=int, default=100_000, help="size of the modelled collection")
    ap.add_argument("--k", type=int, default=1000, help="neighbours per image")
    ap.add_argument("--top", type=int, default=50, help="results compared (one page)")
    ap.add_argument("--similar", type=int, default=5, help="images marked similar")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = args.workdir / "models" / args.model
    vectors = np.load(model / "embeddings.npy").astype(np.float32)
    ids = np.load(model / "embedding_ids.npy")
    from vo_similarity.ingest.manifest import read_manifest
    from vo_similarity.workdir import WorkDir

    table = read_manifest(WorkDir(args.workdir).manifest)
    category = {int(r["image_id"]): str(r["category"]) for r in table}
    labels = np.array([category.get(int(i), "") for i in ids])
    keep = np.isin(labels, [c for c in np.unique(labels) if (labels == c).sum() >= 20])
    vectors, labels = vectors[keep], labels[keep]
    within, between = class_spread(vectors, labels)
    n_classes = len(np.unique(labels))
    print(f"built-in sample: {len(vectors)} images in {n_classes} categories of >= 20; mean "
          f"cosine within a category {within:.3f}, between {between:.3f}")
    k = min(args.k, len(vectors) - 1)
    report(f"built-in sample (N={len(vectors)}, k={k})",
           trial_recalls(vectors, labels, k, args.top, args.similar, args.trials, args.seed))

    x, y = mixture(args.n, vectors.shape[1], n_classes, within, between, args.seed)
    w2, b2 = class_spread(x[:20000], y[:20000])
    print(f"modelled collection: N={args.n}, dim {x.shape[1]}, {n_classes} classes; mean cosine "
          f"within {w2:.3f}, between {b2:.3f}")
    report(f"modelled (N={args.n}, k={args.k})",
           trial_recalls(x, y, args.k, args.top, args.similar, args.trials, args.seed))


if __name__ == "__main__":
    main()
