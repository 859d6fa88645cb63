"""``vo-similarity improve WORKDIR --model M``: fine-tune on new selections, republish if better."""

from __future__ import annotations

import argparse

from vo_similarity.cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_common,
    positive_int,
    reports_errors,
    require_trained,
    set_threads,
)

__all__ = ["add_arguments", "run"]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity improve``."""
    add_common(parser)
    parser.add_argument("--selections", default="service", metavar="SOURCE",
                        help="where the selections are: 'service' (the DaCHS site's "
                             "similarity.selections, through TAP), a TAP URL, or a VOTable/"
                             "CSV/ECSV file (default: %(default)s)")
    parser.add_argument("--gavo-rc", default=None, metavar="FILE",
                        help="DaCHS's settings file (default: $GAVOSETTINGS, else /etc/gavo.rc)")
    parser.add_argument("--held-out", type=_fraction, default=0.3,
                        help="share of query images whose selections test the candidate "
                             "(default: %(default)s)")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="the 95%% interval of the gain in held-out pairwise accuracy "
                             "must lie above this (default: %(default)s)")
    parser.add_argument("--min-invariance", type=float, default=None,
                        help="invariance the candidate must keep (default: the current "
                             "model's minus 0.005)")
    parser.add_argument("--min-queries", type=positive_int, default=10,
                        help="fewest held-out query images to decide on (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=20,
                        help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--learning-rate", "--lr", type=float, default=None,
                        help="fine-tuning learning rate (default: a quarter of the model's)")
    parser.add_argument("--selection-weight", type=float, default=1.0,
                        help="weight of the selections' contrastive term beside SimCLR's "
                             "(default: %(default)s)")
    parser.add_argument("--no-publish", action="store_true",
                        help="keep an accepted model in the work directory, do not republish")


@reports_errors("improve")
def run(args: argparse.Namespace) -> int:
    """One improvement run; prints the decision and its reason."""
    require_trained(args.workdir, args.model)

    from vo_similarity.improve.improve import ImproveBusy, ImproveOptions, improve
    from vo_similarity.publish.dachs import DachsSite
    from vo_similarity.workdir import WorkDir

    set_threads(args.threads)
    options = ImproveOptions(
        source=args.selections, held_out=args.held_out, margin=args.margin,
        min_invariance=args.min_invariance, min_queries=args.min_queries, epochs=args.epochs,
        learning_rate=args.learning_rate, selection_weight=args.selection_weight,
        publish=not args.no_publish, device=args.device)
    # a file of selections and no republishing need no DaCHS at all
    needs_site = options.publish or options.source == "service"
    site = DachsSite.from_config(args.gavo_rc) if needs_site else None
    try:
        result = improve(WorkDir(args.workdir), args.model, options, site=site)
    except ImproveBusy as exc:
        print(f"vo-similarity improve: {exc}")
        return EXIT_FAILURE
    print(f"model {args.model!r}: {result.decision}: {result.reason}")
    sel = result.selections
    if "held_out" in sel:
        print(f"  selections since the model was made: {sel['new']} ({sel['training']} for "
              f"training, {sel['held_out']} held out, {sel['held_out_queries']} query images)")
    print(f"  log: {WorkDir(args.workdir).root / 'improve' / (args.model + '.log')}")
    return EXIT_OK
