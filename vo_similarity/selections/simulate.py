"""A simulated astronomer: marks images on the web page the way a person might.

For tests and benchmarks of learning from selections (issue 13): on the
synthetic sky (:mod:`vo_similarity.ingest.synthetic`), whose manifest column
``label`` is each image's class, a program opens a query image on the web page,
looks at what the page shows (the first page of ``api/neighbours``, 50
images), marks some of them similar and some not similar, and records them
through the page's own write path (:class:`~vo_similarity.selections.page_client.PageClient`:
token and cookie, ``X-Vosim-Token``, the page's ``Origin``, ``POST api/record``,
the rate limit). Nothing is written to the database any other way.

The astronomer's notion of similarity (``Astronomer.notion``):

``"class+size"`` (the default)
    An image is similar to the query when it is of the query's class **and**
    of about its size: ``max(a, b) / min(a, b) <= size_tolerance`` for the
    apparent sizes ``a``, ``b`` of :func:`apparent_size`. This is a personal
    notion that differs from the class on purpose: two spirals of very
    different extent are "not similar" to this astronomer, so a model trained
    on classes alone does not already know it, and one trained on the marks
    can learn it. With the default tolerance of 1.25, about half of the pairs
    of one class of the synthetic sky count as of similar size (measured on
    460 images: 15 % for point sources, 36-55 % for the other classes).
``"class"``
    Similar when of the query's class.
``"random"``
    Marks at random, similar or not with even odds, whatever the images are:
    selections that contradict each other and carry nothing to learn.

What a person gets wrong: every mark of the consistent notions is flipped with
probability ``mistake_rate`` (10 % by default). Which images are marked: of
the images shown, up to half of ``marks_per_query`` that the astronomer finds
similar and the rest that it does not, each picked at random among those shown
(a person marks the obvious ones on both sides, so most queries have both
kinds, which pairwise scores need); when one kind runs short, the other fills
up. Images without a label (the built-in photographs among the synthetic
sky's neighbours) belong to no class of the sky and are never similar.

The marks for a query depend only on the astronomer's ``seed``, the query and
what the page shows.

Run as a module::

    python -m vo_similarity.selections.simulate WORK --url http://127.0.0.1:8080 \\
        --model builtin --marks 500 [--random]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vo_similarity.selections.page_client import PAGE_SIZE, PageClient, PageError
from vo_similarity.workdir import WorkDir

__all__ = ["NOTIONS", "Astronomer", "Sky", "apparent_size", "build_parser", "main",
           "simulate_selections"]

log = logging.getLogger(__name__)

#: the notions of similarity an :class:`Astronomer` may hold (module docstring)
NOTIONS = ("class+size", "class", "random")
#: emission: pixels this many robust standard deviations above the background ...
_EMISSION_SIGMA = 2.0
#: ... and this fraction of the peak (above the background)
_EMISSION_PEAK = 0.1


def apparent_size(image: np.ndarray) -> float:
    """The flux-weighted radius of an image's emission, in pixels.

    What the astronomer judges size by, from the pixels the page shows (the
    work directory's ``pixels.npy``: preprocessed, in [0, 1], masked pixels 0):

    1. background ``b`` = the median of the unmasked (non-zero) pixels, noise
       ``s`` = 1.4826 x their median absolute deviation (a robust standard
       deviation), peak ``p`` = the largest pixel;
    2. emission weight ``w = max(I - t, 0)`` per pixel above the threshold
       ``t = b + max(2 s, (p - b) / 10)``: what stands out of the noise and is
       at least a tenth of the peak, as the eye sees it (with ``t = b`` the
       noise spread over the field would set the size of a compact source);
    3. the flux-weighted mean distance of the pixels from their flux-weighted
       centroid, ``sum(w r) / sum(w)`` (the first radial moment of the light).

    For a Gaussian source of standard deviation ``sigma`` it is about ``sigma``
    (``sigma * sqrt(pi / 2)`` without the threshold). On the synthetic sky its
    rank correlation with the simulated source radius
    (:class:`~vo_similarity.ingest.synthetic_models.ModelParams` ``radius``, 460
    images) is 0.8-0.9 for outflows, lobes, edge-on discs and rings, 0.4-0.6 for
    spirals, blobs, ringed discs and filaments, none for point sources (their
    "size" is the spread of the points): a person's impression, not a measurement.

    Args:
        image: a 2-D array (or ``[1, S, S]``).

    Returns:
        The radius in pixels; 0 for an image with no emission above the noise.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {np.shape(image)}")
    unmasked = img[img > 0]
    if unmasked.size == 0:
        return 0.0
    background = np.median(unmasked)
    noise = 1.4826 * np.median(np.abs(unmasked - background))
    threshold = background + max(_EMISSION_SIGMA * noise,
                                 _EMISSION_PEAK * (float(img.max()) - background))
    w = np.clip(img - threshold, 0.0, None)
    total = w.sum()
    if not total > 0:
        return 0.0
    y, x = np.indices(img.shape, dtype=np.float64)
    cy, cx = (w * y).sum() / total, (w * x).sum() / total
    return float((w * np.hypot(y - cy, x - cx)).sum() / total)


class Sky:
    """What the astronomer knows of the images: class, DID, apparent size.

    Args:
        labels: image_id -> class (``""``: none).
        dids: image_id -> obs_publisher_did.
        pixels: array ``[N, 1, S, S]`` whose row ``image_id`` is that image (the
            work directory's ``pixels.npy``, memory-mapped); ``None`` when sizes
            are given.
        sizes: image_id -> apparent size, instead of ``pixels``.
    """

    def __init__(self, labels: dict[int, str], dids: dict[int, str], *,
                 pixels: np.ndarray | None = None, sizes: dict[int, float] | None = None):
        self.labels, self.dids = labels, dids
        self._pixels = pixels
        self._sizes: dict[int, float] = dict(sizes or {})

    @classmethod
    def from_workdir(cls, workdir: str | os.PathLike | WorkDir) -> Sky:
        """The images of an ingested work directory (manifest and pixel store)."""
        from vo_similarity.ingest.manifest import read_manifest

        work = workdir if isinstance(workdir, WorkDir) else WorkDir(workdir)
        if not work.manifest.is_file():
            raise FileNotFoundError(f"{work.manifest} is missing: run `vo-similarity ingest` "
                                    "first")
        manifest = read_manifest(work.manifest)
        ids = [int(i) for i in manifest["image_id"]]
        return cls(dict(zip(ids, (str(v) for v in manifest["label"]))),
                   dict(zip(ids, (str(v) for v in manifest["obs_publisher_did"]))),
                   pixels=np.load(work.pixels, mmap_mode="r"))

    def labelled(self) -> list[int]:
        """The image_ids that have a class, in id order."""
        return sorted(i for i, label in self.labels.items() if label)

    def size(self, image_id: int) -> float:
        """The apparent size of an image (:func:`apparent_size`; computed once)."""
        if image_id not in self._sizes:
            if self._pixels is None:
                raise KeyError(f"no size known for image {image_id}")
            self._sizes[image_id] = apparent_size(self._pixels[image_id])
        return self._sizes[image_id]


@dataclass(frozen=True)
class Astronomer:
    """A simulated person marking images (the module docstring says how).

    Attributes:
        seed: the astronomer's random seed (queries, which images, mistakes).
        mistake_rate: probability that a mark is flipped (consistent notions).
        notion: one of :data:`NOTIONS`.
        size_tolerance: the largest ratio of apparent sizes still "of about the
            same size" (``"class+size"``).
        marks_per_query: marks given for each query image.
        page_size: images the page shows on its first page (what is looked at).
    """

    seed: int = 0
    mistake_rate: float = 0.1
    notion: str = "class+size"
    size_tolerance: float = 1.25
    marks_per_query: int = 20
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if self.notion not in NOTIONS:
            raise ValueError(f"unknown notion {self.notion!r}; choose one of "
                             f"{', '.join(NOTIONS)}")
        if not 0.0 <= self.mistake_rate <= 1.0:
            raise ValueError(f"mistake_rate must be in [0, 1], got {self.mistake_rate}")
        if not (math.isfinite(self.size_tolerance) and self.size_tolerance >= 1.0):
            raise ValueError(f"size_tolerance is a ratio >= 1, got {self.size_tolerance}")
        if self.marks_per_query < 1 or not 1 <= self.page_size <= 100:
            raise ValueError("marks_per_query must be >= 1 and page_size from 1 to 100, got "
                             f"{self.marks_per_query} and {self.page_size}")

    def finds_similar(self, sky: Sky, query: int, image: int) -> bool:
        """The astronomer's honest opinion (no mistake) for a consistent notion."""
        label = sky.labels.get(query, "")
        if not label or sky.labels.get(image, "") != label:
            return False
        if self.notion == "class":
            return True
        a, b = sky.size(query), sky.size(image)
        return max(a, b) <= self.size_tolerance * min(a, b)

    def rng(self, query: int) -> np.random.Generator:
        """The generator of the marks for ``query`` (seed and query only)."""
        return np.random.default_rng([self.seed, int(query)])

    def marks(self, sky: Sky, query: int, shown: Sequence[int], n: int | None = None
              ) -> list[tuple[int, bool]]:
        """Which of the ``shown`` images to mark for ``query``, and how.

        Args:
            sky: what the astronomer knows of the images.
            query: the query image_id.
            shown: the image_ids the page shows, in rank order.
            n: at most this many marks (the rest of a run's total); never more than
                :attr:`marks_per_query`, nor than the images shown.

        Returns:
            ``(image_id, is_similar)`` pairs, in the order shown.
        """
        rng = self.rng(query)
        shown = [int(i) for i in dict.fromkeys(shown) if int(i) != int(query)]
        n = min(self.marks_per_query, len(shown), self.marks_per_query if n is None else n)
        if self.notion == "random":
            picked = sorted(rng.choice(len(shown), n, replace=False).tolist())
            return [(shown[i], bool(rng.random() < 0.5)) for i in picked]
        if not sky.labels.get(query, ""):
            raise ValueError(f"query image {query} has no class (manifest label): the "
                             f"{self.notion!r} astronomer cannot judge it")
        opinion = [self.finds_similar(sky, query, i) for i in shown]
        yes = [k for k, o in enumerate(opinion) if o]
        no = [k for k, o in enumerate(opinion) if not o]
        n_yes = min(len(yes), n - min(len(no), n // 2))
        n_no = n - n_yes
        picked = sorted(rng.choice(yes, n_yes, replace=False).tolist()
                        + rng.choice(no, n_no, replace=False).tolist())
        flips = rng.random(len(picked)) < self.mistake_rate
        return [(shown[k], opinion[k] != bool(flip)) for k, flip in zip(picked, flips)]


def _queries(sky: Sky, astronomer: Astronomer, query_ids: Iterable[int] | None) -> list[int]:
    if query_ids is not None:
        return [int(q) for q in query_ids]
    ids = sky.labelled()
    if not ids:
        raise ValueError("the work directory has no image with a class (manifest label): "
                         "the simulated astronomer needs the synthetic sky "
                         "(`vo-similarity ingest --synthetic`)")
    return [ids[i] for i in np.random.default_rng(astronomer.seed).permutation(len(ids))]


def simulate_selections(workdir: str | os.PathLike | WorkDir, page_url: str, *, model: str,
                        n_marks: int = 500, astronomer: Astronomer = Astronomer(),
                        query_ids: Iterable[int] | None = None, session: str | None = None,
                        client: PageClient | None = None) -> int:
    """Let ``astronomer`` mark ``n_marks`` images on the web page; returns the marks written.

    Args:
        workdir: the work directory the page's service publishes (its manifest
            gives each image's class and DID, its pixels the sizes).
        page_url: the web page's URL, or its server's root.
        model: the published model whose neighbours the page shows (name or model_id).
        n_marks: how many marks to write in all (the last query may get fewer
            than ``marks_per_query``).
        astronomer: who marks, and how.
        query_ids: the query images (image_ids), in order; default: the images
            with a class, in an order shuffled by the astronomer's seed. Each
            query is looked at once.
        session: the session id recorded with the marks; default a new random one.
        client: the page client to write with (default one on ``page_url``).

    Returns:
        The number of rows the server wrote (``n_marks`` unless the queries ran out).

    Raises:
        PageError: the page refused a request.
        ValueError: the work directory is not the one the page publishes, or
            has no classes for a consistent astronomer.
    """
    if n_marks < 1:
        raise ValueError(f"n_marks must be >= 1, got {n_marks}")
    sky = Sky.from_workdir(workdir)
    session = session or "sim-" + secrets.token_urlsafe(12)
    own = client is None
    client = client or PageClient(page_url)
    try:
        model_id = client.model_id(model)
        written = 0
        for query in _queries(sky, astronomer, query_ids):
            if written >= n_marks:
                break
            if query not in sky.dids:
                raise ValueError(f"query image {query} is not in the work directory")
            try:
                reply = client.neighbours(sky.dids[query], model_id, 0, n=astronomer.page_size)
            except PageError as exc:
                if exc.status != 404:
                    raise
                log.warning("skipping query %d: %s", query, exc)
                continue
            shown = [int(r["image_id"]) for r in reply["results"]]
            for r in reply["results"]:
                if sky.dids.get(int(r["image_id"])) != r["obs_publisher_did"]:
                    raise ValueError(f"the page shows image {r['image_id']} as "
                                     f"{r['obs_publisher_did']!r}, the work directory has "
                                     f"{sky.dids.get(int(r['image_id']))!r}: the page "
                                     "publishes another work directory")
            marks = astronomer.marks(sky, query, shown, n_marks - written)
            if not marks:
                continue
            written += client.record(
                sky.dids[query], [sky.dids[i] for i, s in marks if s],
                [sky.dids[i] for i, s in marks if not s], model=model_id, session=session)
            log.debug("query %d: %d marks (%d similar)", query, len(marks),
                      sum(s for _, s in marks))
        if written < n_marks:
            log.warning("the queries ran out after %d of %d marks", written, n_marks)
        log.info("recorded %d selections under model %d, session %s", written, model_id,
                 session)
        return written
    finally:
        if own:
            client.close()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m vo_similarity.selections.simulate``."""
    from vo_similarity.cli_common import EPILOG, add_workdir, positive_int

    parser = argparse.ArgumentParser(
        prog="python -m vo_similarity.selections.simulate", epilog=EPILOG,
        description="Record the selections of a simulated astronomer through the web page "
                    "(docs/selections.md).")
    add_workdir(parser, help="the work directory the page's service publishes")
    parser.add_argument("--url", required=True, help="the web page's URL, or its server's root")
    parser.add_argument("-m", "--model", required=True,
                        help="the published model (name or model_id)")
    parser.add_argument("--marks", type=positive_int, default=500,
                        help="selections to record (default: %(default)s)")
    parser.add_argument("--random", action="store_true",
                        help="mark at random (selections that contradict each other); the "
                             "same as --notion random")
    parser.add_argument("--notion", choices=NOTIONS, default="class+size",
                        help="the notion of similarity (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--mistake-rate", type=float, default=0.1,
                        help="probability of a flipped mark (default: %(default)s)")
    parser.add_argument("--size-tolerance", type=float, default=1.25,
                        help="largest ratio of sizes still similar (default: %(default)s)")
    parser.add_argument("--marks-per-query", type=positive_int, default=20,
                        help="default: %(default)s")
    parser.add_argument("--session", default=None,
                        help="the session id to record (default: a new random one)")
    parser.add_argument("--source-address", default=None,
                        help="local address to send from (each has its own rate limit)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: INFO messages, -vv: DEBUG too")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (docs/cli.md)."""
    from vo_similarity.cli_common import EXIT_OK, configure_logging, reports_errors

    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)

    @reports_errors("simulate")
    def run(args: argparse.Namespace) -> int:
        session = args.session or "sim-" + secrets.token_urlsafe(12)
        astronomer = Astronomer(seed=args.seed, mistake_rate=args.mistake_rate,
                                notion="random" if args.random else args.notion,
                                size_tolerance=args.size_tolerance,
                                marks_per_query=args.marks_per_query)
        with PageClient(args.url, source_address=args.source_address) as client:
            written = simulate_selections(Path(args.workdir), args.url, model=args.model,
                                          n_marks=args.marks, astronomer=astronomer,
                                          session=session, client=client)
        print(f"recorded {written} selections (notion {astronomer.notion}, session {session})")
        return EXIT_OK

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
