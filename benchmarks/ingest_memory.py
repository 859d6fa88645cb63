"""Peak memory of ingesting a large FITS cube: the target is at most 1 GiB for 2 GB.

The cube (RA, DEC, FREQ; float32; a Gaussian source moving across the channels
on noise, with a NaN border outside the primary beam) is written to disk a
plane at a time, so this script itself never holds it. It is then ingested by
``vo-similarity ingest`` in a child process, whose peak resident set size
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) is printed with its ratio to the
target. Exit status 0 when the ratio is at most 1.

Usage::

    python benchmarks/ingest_memory.py [--gb 2.0] [--side 2048] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

TARGET_BYTES = 2**30  # 1 GiB


def write_cube(path: Path, side: int, nchan: int, seed: int = 0) -> int:
    """Stream a ``(nchan, side, side)`` float32 cube to ``path``; return its size in bytes."""
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 3
    header["NAXIS1"] = side
    header["NAXIS2"] = side
    header["NAXIS3"] = nchan
    for key, value in {
        "CTYPE1": "RA---SIN", "CRVAL1": 83.82, "CDELT1": -1e-5, "CRPIX1": side / 2 + 0.5,
        "CTYPE2": "DEC--SIN", "CRVAL2": -5.39, "CDELT2": 1e-5, "CRPIX2": side / 2 + 0.5,
        "CTYPE3": "FREQ", "CRVAL3": 2.3e11, "CDELT3": 1e6, "CRPIX3": 1.0,
        "BUNIT": "Jy/beam", "BMAJ": 5e-5, "BMIN": 4e-5, "BPA": 10.0, "OBJECT": "BENCH",
        "RADESYS": "ICRS",
    }.items():
        header[key] = value
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side].astype(np.float32) - side / 2
    border = np.hypot(x, y) > 0.48 * side
    with open(path, "wb") as f:
        f.write(header.tostring().encode("ascii"))
        for k in range(nchan):
            cx = (k / max(nchan - 1, 1) - 0.5) * side / 4
            plane = np.exp(-((x - cx) ** 2 + y**2) / (2 * (side / 40) ** 2), dtype=np.float32)
            plane += 0.02 * rng.standard_normal((side, side), dtype=np.float32)
            plane[border] = np.nan
            f.write(plane.astype(">f4").tobytes())
        f.write(b"\0" * (-f.tell() % 2880))
        return f.tell()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="cube size in GB (default 2)")
    parser.add_argument("--side", type=int, default=2048, help="plane side in pixels")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the cube and work directory")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ingest_memory_", dir=args.dir))
    try:
        (base / "cubes").mkdir()
        nchan = math.ceil(args.gb * 1e9 / (4 * args.side**2))
        t0 = time.perf_counter()
        nbytes = write_cube(base / "cubes" / "big.fits", args.side, nchan)
        print(f"wrote a {nchan} x {args.side} x {args.side} float32 cube: "
              f"{nbytes / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "vo_similarity", "ingest", str(base / "work"),
             "--folder", str(base / "cubes"), "--no-progress"],
            capture_output=True, text=True, check=False,
        )
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
        print(proc.stdout.strip())
        if proc.returncode != 0:
            print(proc.stderr.strip()[-2000:], file=sys.stderr)
            print(f"ingest failed with exit status {proc.returncode}")
            return 1
        ratio = peak / TARGET_BYTES
        print(f"ingest time: {elapsed:.1f} s ({nbytes / 1e6 / elapsed:.0f} MB/s)")
        print(f"peak RSS: {peak / 2**20:.0f} MiB; target 1024 MiB; ratio {ratio:.2f} "
              f"({'within' if ratio <= 1 else 'OVER'} target)")
        return 0 if ratio <= 1 else 1
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
