"""Benchmark and check: the whole built-in sample ingested back from a DaCHS's ObsCore.

On a scratch DaCHS of its own (never the operator's), the built-in sample is
published (shipped model, k = 20), then ingested twice into fresh work
directories: with ``vo-similarity ingest --tap ... --adql ...`` from that
DaCHS's ObsCore, and from the files (``--builtin``). Prints the download and
ingest times and whether the two give the same pixels (``pixels_sha256``),
the same DIDs and the same obs_ids, in the same order.
(``tests/ingest/test_obscore.py`` checks the same on 24 images.)

    .venv/bin/python benchmarks/obscore_ingest.py [--size 64] [--workers 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vo_similarity.cli import main as cli
from vo_similarity.ingest import stellarium
from vo_similarity.ingest.manifest import read_manifest
from vo_similarity.ingest.pipeline import ingest
from vo_similarity.ingest.preprocess import PreprocessConfig
from vo_similarity.publish.publisher import publish
from vo_similarity.publish.sample import builtin_workdir
from vo_similarity.publish.scratch import ScratchDachs
from vo_similarity.workdir import WorkDir

ADQL = ("SELECT obs_publisher_did, obs_id, access_url, access_format, target_name, "
        "s_ra, s_dec, s_fov FROM ivoa.obscore "
        "WHERE obs_publisher_did LIKE 'ivo://vo-similarity.example/%' ORDER BY obs_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with ScratchDachs.start() as scratch, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        publish(builtin_workdir(root / "published", k=20), scratch.site(), progress=False)
        tap, files = WorkDir(root / "tap"), WorkDir(root / "files")
        t0 = time.perf_counter()
        status = cli(["ingest", str(tap.root), "--tap", f"{scratch.url}/tap", "--adql", ADQL,
                      "--size", str(args.size), "--download-workers", str(args.workers),
                      "--no-progress"])
        t_tap = time.perf_counter() - t0
        via_tap = read_manifest(tap.manifest)
        order = [str(o) for o in via_tap["obs_id"]]
        t0 = time.perf_counter()
        by_id = {inp.obs_id: inp for inp in stellarium.builtin_sample()}
        ingest([by_id[o] for o in order], files, PreprocessConfig(size=args.size),
               progress=False)
        t_files = time.perf_counter() - t0
        via_files = read_manifest(files.manifest)
        same_pixels = (via_tap.meta["pixels_sha256"] == via_files.meta["pixels_sha256"]
                       and np.array_equal(np.load(tap.pixels), np.load(files.pixels)))
        same_dids = list(via_tap["obs_publisher_did"]) == list(via_files["obs_publisher_did"])
        print(f"# the built-in sample back from {scratch.url}/tap, size {args.size}, "
              f"{args.workers} downloads at a time")
        print(f"ingest --tap: exit {status}, {len(via_tap)} images in {t_tap:.1f} s "
              f"(query, {len(list(tap.downloads.iterdir()))} downloads, ingest); "
              f"from the files: {t_files:.1f} s")
        print(f"same pixels (pixels_sha256 and arrays): {same_pixels}; same DIDs: {same_dids}; "
              f"same obs_ids: {order == [str(o) for o in via_files['obs_id']]}")


if __name__ == "__main__":
    main()
