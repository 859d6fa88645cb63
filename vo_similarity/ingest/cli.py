"""``vo-similarity ingest``: read images into the work directory.

Exit status (:mod:`vo_similarity.cli_common`): 0 when every input became an
image; 3 when the run finished but some inputs were rejected (each has its
line in ``ingest_report.txt``); 1 when the sources yield no image at all (an
empty folder, or every input rejected), with a message naming them and no
manifest or contact sheet written; 2 for a usage error.
"""

from __future__ import annotations

import argparse

from vo_similarity.cli_common import (
    EXIT_OK,
    EXIT_REJECTED,
    add_workdir,
    fail,
    usage_error,
)

__all__ = ["add_arguments", "parse_range", "run"]

STAGE = "ingest"


def parse_range(text: str) -> tuple[int | None, int | None]:
    """``"A:B"`` → ``(A, B)``; either side may be empty (open), ``"A"`` alone is one channel."""
    try:
        if ":" not in text:
            a = int(text)
            return a, a + 1
        a, b = text.split(":", 1)
        return (int(a) if a.strip() else None), (int(b) if b.strip() else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP channel numbers, got {text!r}")


def _parse_clip(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH percentiles, got {text!r}")
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity ingest``."""
    from vo_similarity.ingest.inputs import DEFAULT_AUTHORITY  # light module

    add_workdir(parser, help="the work directory (created if missing)")
    src = parser.add_argument_group("sources (any combination; images are added in this order)")
    src.add_argument("--builtin", action="store_true",
                     help="the built-in real sample: the 555 deep-sky photographs of "
                          "Debian's stellarium-data, with positions and credits")
    src.add_argument("--folder", action="append", default=[], metavar="DIR",
                     help="a folder of FITS images/cubes, PNG or JPEG files "
                          "(recursive; repeatable)")
    src.add_argument("--synthetic", type=int, metavar="N",
                     help="N images of the synthetic ALMA-like sky, written as FITS files "
                          "to WORKDIR/synthetic/")
    src.add_argument("--seed", type=int, default=0, help="seed of the synthetic sky (default 0)")
    src.add_argument("--tap", metavar="URL",
                     help="an archive's TAP service: the files of the rows of --adql's "
                          "query, downloaded to WORKDIR/downloads/ (keeping the archive's "
                          "DIDs)")
    src.add_argument("--adql", metavar="QUERY",
                     help="with --tap: an ObsCore query selecting at least "
                          "obs_publisher_did and access_url, e.g. \"SELECT obs_publisher_did, "
                          "obs_id, access_url, access_format, target_name, s_ra, s_dec, s_fov "
                          "FROM ivoa.obscore WHERE obs_collection = 'X'\"")
    src.add_argument("--download-workers", type=int, default=4, metavar="N",
                     help="with --tap: downloads at a time (default 4)")
    src.add_argument("--limit", type=int, metavar="N",
                     help="take at most N new inputs in all (for quick trials)")
    prep = parser.add_argument_group("reading and preprocessing")
    prep.add_argument("--size", type=int, default=128, metavar="S",
                      help="side of the square model images in pixels (default 128)")
    prep.add_argument("--channels", type=parse_range, metavar="A:B",
                      help="channel range of cubes for the peak-flux image: 0-based, "
                           "B excluded, either side may be left out (default: all)")
    prep.add_argument("--clip", type=_parse_clip, default=(0.5, 99.9), metavar="LO:HI",
                      help="percentiles mapped to 0 and 1 (default 0.5:99.9)")
    prep.add_argument("--stretch", choices=("asinh", "log", "linear"), default="asinh",
                      help="intensity stretch after clipping (default asinh)")
    parser.add_argument("--authority", default=DEFAULT_AUTHORITY, metavar="AUTH",
                        help="IVOA authority of the publisher DIDs, "
                             f"ivo://AUTH/~?<obs_id> (default {DEFAULT_AUTHORITY})")
    parser.add_argument("--collection", default=None, metavar="NAME",
                        help="the collection this work directory is published as (its "
                             "obs_collection; letters, digits, '.', '_', '-'; default: the "
                             "one it has, else vo-similarity); collections of other work "
                             "directories live beside it in the service")


def run(args: argparse.Namespace) -> int:
    """Run the ingest stage; see the module docstring for the exit status."""
    import sys
    import time
    from pathlib import Path

    from vo_similarity.ingest.folder import scan_folder
    from vo_similarity.ingest.pipeline import NoImages, ingest
    from vo_similarity.ingest.preprocess import PreprocessConfig
    from vo_similarity.workdir import WorkDir

    start = time.perf_counter()
    try:
        config = PreprocessConfig(size=args.size, clip=tuple(args.clip), stretch=args.stretch)
    except ValueError as exc:
        return usage_error(STAGE, str(exc))
    work = WorkDir(args.workdir)
    limit = args.limit if args.limit is not None else sys.maxsize
    if limit < 0 or (args.synthetic is not None and args.synthetic < 0):
        return usage_error(STAGE, "--limit and --synthetic take a number >= 0")
    if bool(args.tap) != bool(args.adql):
        return usage_error(STAGE, "--tap URL and --adql QUERY go together")
    if args.download_workers < 1:
        return usage_error(STAGE, "--download-workers takes a number >= 1")
    if args.collection is not None:
        from vo_similarity.publish.collections import check_collection_name

        try:
            check_collection_name(args.collection)
        except ValueError as exc:
            return usage_error(STAGE, str(exc))
    if not (args.builtin or args.folder or args.synthetic is not None or args.tap) \
            and not work.manifest.is_file():
        return usage_error(STAGE, "no source given: use --builtin, --folder DIR, --synthetic N "
                                  "or --tap URL --adql QUERY")

    inputs = []
    if args.builtin:
        from vo_similarity.ingest import stellarium

        try:
            inputs += stellarium.builtin_sample()
        except FileNotFoundError as exc:
            return fail(STAGE, f"built-in sample not available: {exc}")
    for folder in args.folder:
        try:
            found = scan_folder(folder)
        except NotADirectoryError as exc:
            return usage_error(STAGE, str(exc))
        if not found:
            return fail(STAGE, f"no image in {folder}: the folder holds no file "
                               "(hidden ones are skipped)")
        inputs += found
    inputs = inputs[:limit]
    if args.synthetic:
        from vo_similarity.ingest import synthetic

        n = min(args.synthetic, limit - len(inputs))
        inputs += synthetic.write_sky(work.synthetic, n, seed=args.seed, progress=args.progress)
    failed: list[tuple[str, str]] = []
    if args.tap:
        import pyvo

        from vo_similarity.ingest.obscore import download_inputs, query_obscore

        try:
            table = query_obscore(args.tap, args.adql)
        except (pyvo.dal.DALServiceError, pyvo.dal.DALQueryError, ValueError) as exc:
            return fail(STAGE, f"the ObsCore query on {args.tap} failed: {exc}")
        found, failed = download_inputs(table[:max(0, limit - len(inputs))], work.downloads,
                                        workers=args.download_workers,
                                        progress=args.progress)
        print(f"{len(table)} rows from {args.tap}: {len(found)} files, "
              f"{len(failed)} could not be had")
        inputs += found

    try:
        result = ingest(inputs, work, config, authority=args.authority, channels=args.channels,
                        progress=args.progress, rejected=failed, collection=args.collection)
    except NoImages as exc:
        return fail(STAGE, f"no image in {_sources(args)}: {exc}")
    elapsed = time.perf_counter() - start
    print(f"ingested {result.n_images} images into {work.root} in {elapsed:.1f} s")
    if result.rejected:
        print(f"rejected {len(result.rejected)} inputs, one line each in {work.ingest_report}")
        for path, reason in result.rejected[:5]:
            print(f"  {Path(path).name}: {reason}")
        if len(result.rejected) > 5:
            print(f"  ... and {len(result.rejected) - 5} more")
    else:
        print("rejected 0 inputs")
    print(f"contact sheet: {work.contact_sheet}")
    return EXIT_REJECTED if result.rejected else EXIT_OK


def _sources(args: argparse.Namespace) -> str:
    """The sources of a run, as the error message names them."""
    names = (["the built-in sample"] if args.builtin else []) + list(args.folder)
    if args.synthetic is not None:
        names.append("the synthetic sky")
    if args.tap:
        names.append(args.tap)
    return ", ".join(names) or f"the manifest of {args.workdir}"
