"""Benchmark: memory and time of reading a manifest as the archive grows (issue 14).

Tiles the built-in sample's manifest (real credits and names, among them one
credit of 1,229 characters) to N rows with distinct ids, DIDs and obs_ids,
writes it with :func:`vo_similarity.ingest.manifest.write_manifest`, and reads
it, each way in a process of its own (peak resident memory from ``ru_maxrss``
minus the resident memory after the imports):

* ``read_manifest`` (the package's streaming reader);
* ``astropy`` (``Table.read(format="ascii.ecsv")``, what the package used before).

Usage::

    python benchmarks/manifest.py --workdir work/builtin --rows 50000 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_READ = """
import json, resource, sys, time
import numpy as np
from astropy.table import Table
from vo_similarity.ingest.manifest import read_manifest
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def now(): return next(int(l.split()[1]) for l in open("/proc/self/status")
                       if l.startswith("VmRSS")) / 1024
before = now()
t0 = time.perf_counter()
if sys.argv[2] == "astropy":
    table = Table.read(sys.argv[1], format="ascii.ecsv")
else:
    table = read_manifest(sys.argv[1])
seconds = time.perf_counter() - t0
print(json.dumps({"rows": len(table), "seconds": seconds, "mib": peak() - before}))
"""


def tiled_manifest(source: Path, rows: int, dest: Path) -> None:
    from vo_similarity.ingest.manifest import read_manifest, write_manifest

    table = read_manifest(source)
    names = table.colnames
    base = [dict(zip(names, values)) for values in zip(*(table[c].tolist() for c in names))]

    def tiled():
        for i in range(rows):
            row = dict(base[i % len(base)])
            row.update(image_id=i, obs_id=f"{row['obs_id']}-{i}",
                       obs_publisher_did=f"{row['obs_publisher_did']}-{i}")
            yield row

    write_manifest(dest, list(tiled()), table.meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="work/builtin",
                        help="a work directory whose manifest is tiled (default work/builtin)")
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    args = parser.parse_args()
    source = Path(args.workdir) / "manifest.ecsv"
    if not source.is_file():
        sys.exit(f"{source} is missing: run `vo-similarity ingest {args.workdir} --builtin` first")
    print("| rows | file [MB] | reader | seconds | peak beyond the imports [MiB] | MiB per 10^5 rows |")
    print("|---:|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"manifest-{rows}.ecsv"
            tiled_manifest(source, rows, path)
            for reader in ("read_manifest", "astropy"):
                out = subprocess.run([sys.executable, "-c", _READ, str(path), reader],
                                     check=True, capture_output=True, text=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                print(f"| {rows:,} | {path.stat().st_size / 1e6:.1f} | {reader} | "
                      f"{got['seconds']:.2f} | {got['mib']:.0f} | "
                      f"{got['mib'] / rows * 1e5:.0f} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
