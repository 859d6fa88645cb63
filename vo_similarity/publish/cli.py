"""``vo-similarity publish WORKDIR [--model NAME ...]``: load into GAVO DaCHS."""

from __future__ import annotations

import argparse

from vo_similarity.cli_common import EXIT_OK, add_workdir, fail

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity publish``."""
    add_workdir(parser, help="the work directory (manifest, previews, models/)")
    parser.add_argument("-m", "--model", action="append", dest="models", metavar="NAME",
                        help="publish this model's neighbours, a folder below WORKDIR/models "
                             "(repeatable; default: every model of WORKDIR)")
    parser.add_argument("--gavo-rc", default=None, metavar="FILE",
                        help="DaCHS's settings file (default: $GAVOSETTINGS, else /etc/gavo.rc)")
    parser.add_argument("--no-metadata", action="store_true",
                        help="skip `dachs imp -m` and `dachs limits` (faster republish)")
    parser.add_argument("--replace-collection", action="store_true",
                        help="allow this publication to remove images of WORKDIR's collection "
                             "(an image set that lacks some of the published ones); without "
                             "it such a publish is refused and changes nothing. Other "
                             "collections are never touched")


def run(args: argparse.Namespace) -> int:
    """Publish the work directory and print where and how to query it."""
    import subprocess

    import psycopg

    from ..workdir import WorkDir
    from .dachs import DachsError, DachsSite
    from .publisher import WorkDirIncomplete, publish
    from .queries import similar_images_query

    try:
        site = DachsSite.from_config(args.gavo_rc)
        report = publish(WorkDir(args.workdir), site, args.models,
                         progress=args.progress, refresh_metadata=not args.no_metadata,
                         replace_collection=args.replace_collection)
    except (DachsError, WorkDirIncomplete, FileNotFoundError, ValueError, RuntimeError,
            psycopg.Error, subprocess.TimeoutExpired) as exc:
        return fail("publish", str(exc))

    print(f"Published in DaCHS at {report.url} (TAP: {report.url}/tap)")
    removed = f", {report.images_removed} removed" if report.images_removed else ""
    print(f"images: {'imported' if report.images_imported else 'unchanged'} "
          f"(collection {report.collection!r}{removed})")
    if report.other_collections:
        print("other collections, unchanged: " + ", ".join(
            f"{name!r} ({n} images)" for name, n in sorted(report.other_collections.items())))
    for m in report.models:
        if m.incremental:
            sent = (f"only the {m.rows // max(m.k, 1)} images whose lists changed since "
                    f"its publication, in one transaction of {m.load_s:.1f} s")
        else:
            sent = (f"{m.rows} rows in {m.load_s:.1f} s ({m.rows_per_s / 1e6:.2f} M rows/s; "
                    f"swap {m.swap_s * 1000:.0f} ms)")
        print(f"model {m.name!r} (model_id {m.model_id}): {m.n_images} images x {m.k} "
              f"neighbours; {sent}"
              + ("" if m.weights_url is None else f"; ONNX file {m.weights_url}"))
    searchable = [str(m.model_id) for m in report.models if m.searchable]
    if searchable:
        print(f"search by vector or by example (JSON; docs/search-service.md): "
              f"{report.url}/similarity/q/search/api, model {', '.join(searchable)}")
    if report.models and report.example_did:
        print("\nThe 20 images most similar to the first image; paste into TOPCAT's TAP "
              f"window ({report.url}/tap) or run with STILTS:\n")
        query = similar_images_query(report.example_did)
        print(query)
        others = [m for m in report.models if m.model_id != report.default_model_id]
        if others:
            print(f"\n(the collection's default model, model_id {report.default_model_id}; "
                  "another model's neighbours: FROM similarity.similar_by_model "
                  f"... AND model_id = {others[0].model_id})")
        one_line = " ".join(query.split())
        print(f"\nWith STILTS:\n  stilts tapquery tapurl={report.url}/tap ofmt=csv "
              + _shell_word(f"adql={one_line}"))
    return EXIT_OK


def _shell_word(text: str) -> str:
    """``text`` as one POSIX shell word: in double quotes when that is safe
    (the readable form for ADQL, which is full of single quotes), else quoted
    by :func:`shlex.quote`."""
    import shlex

    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)
