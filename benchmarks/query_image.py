"""Benchmark of ``Similarity.query_image`` on transformed archive images (issue 11).

Takes 100 images of the built-in sample as the service publishes them
(downloaded through ``access_url``), rotates each by 37 degrees, flips it and
rescales it by 0.9, and asks ``query_image`` for its 5 most similar published
images.  Prints the fraction that find their own entry among the 5 (target:
at least 0.95) and among the first 1, and the time per query (local
embedding with the published ONNX model, the server's vector search and the
TAP step) with the local part on its own.  ``--images 20`` picks the 20
images of the test (tests/client/test_client_search.py).

By default it makes a scratch DaCHS of its own (vo_similarity.publish.scratch)
and publishes the built-in sample with the shipped model there (about 2
minutes on 2 cores); ``--server URL`` queries a service that publishes it
already.  The operator's DaCHS is never touched unless named.

Usage::

    .venv/bin/python benchmarks/query_image.py            # 100 images
    .venv/bin/python benchmarks/query_image.py --images 555 --server http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy import units as u

from vo_similarity.evaluate.image_search import spread_selection, transformed

TARGET = 0.95


@contextlib.contextmanager
def published_sample(root: Path):
    """A scratch DaCHS with the built-in sample and the shipped model published."""
    from vo_similarity.publish.publisher import publish
    from vo_similarity.publish.sample import builtin_workdir
    from vo_similarity.publish.scratch import ScratchDachs

    t0 = time.perf_counter()
    work = builtin_workdir(root / "work")
    with ScratchDachs.start() as scratch:
        publish(work, scratch.site(), progress=False)
        print(f"published the built-in sample at {scratch.url} in "
              f"{time.perf_counter() - t0:.0f} s")
        yield scratch.url


def run(server: str, n_images: int, angle: float, scale: float, folder: Path) -> None:
    from vo_similarity.client import SimilarityClass

    client = SimilarityClass(server=server)
    picked = spread_selection(client.query_region("0 0", radius=180 * u.deg), n_images)
    files = client.download_images(picked, path=folder / "files", show_progress=False)
    client.query_image(np.asarray(transformed(files[0], angle, scale)), n=5)  # fetch the model
    top1, top5, seconds, local, missed = 0, 0, [], [], []
    for did, path in zip(picked["obs_publisher_did"], files, strict=True):
        image = np.asarray(transformed(path, angle, scale))
        start = time.perf_counter()
        client.query_image(image, n=5, get_query_payload=True)  # reads and embeds, sends nothing
        local.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = client.query_image(image, n=5)
        seconds.append(time.perf_counter() - start)
        found = list(result["obs_publisher_did"])
        top1 += bool(found) and found[0] == did
        top5 += did in found
        if did not in found:
            missed.append(did)
    n = len(picked)
    print(f"query_image on {n} images rotated by {angle:g} deg, flipped, scaled by {scale:g}:")
    print(f"  own entry among the 5 nearest: {top5}/{n} = {top5 / n:.3f} "
          f"(target >= {TARGET}) {'MET' if top5 / n >= TARGET else 'NOT MET'}")
    print(f"  own entry first:               {top1}/{n} = {top1 / n:.3f}")
    print(f"  time per query: median {1000 * statistics.median(seconds):.0f} ms, "
          f"max {1000 * max(seconds):.0f} ms (embedding here + search + TAP); of which "
          f"reading and embedding here: median {1000 * statistics.median(local):.0f} ms")
    for did in missed:
        print(f"  missed: {did}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a DaCHS that publishes the built-in sample "
                        "(default: a scratch instance made for this run)")
    parser.add_argument("--images", type=int, default=100, help="how many (default 100)")
    parser.add_argument("--angle", type=float, default=37.0)
    parser.add_argument("--scale", type=float, default=0.9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="query-image-") as tmp:
        folder = Path(tmp)
        with (contextlib.nullcontext(args.server) if args.server
              else published_sample(folder)) as server:
            run(server, args.images, args.angle, args.scale, folder)


if __name__ == "__main__":
    main()
