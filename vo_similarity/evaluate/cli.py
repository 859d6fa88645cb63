"""``vo-similarity evaluate``: precision@k, mAP and invariance beside two baselines;
with ``--selections SOURCE``, the scores on recorded selections instead (docs/selections.md)."""

from __future__ import annotations

import argparse

from vo_similarity.cli_common import (
    EXIT_OK,
    add_common,
    device_name,
    positive_int,
    reports_errors,
    require_trained,
    set_threads,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity evaluate``."""
    add_common(parser)
    parser.add_argument("--split", choices=["all", "train", "val"],
                        help="images to evaluate (default: val if the model holds images out)")
    parser.add_argument("--max-images", type=positive_int, default=5000,
                        help="evaluate a random subset of at most this many images "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1234,
                        help="seed of the invariance transforms (default: %(default)s)")
    parser.add_argument("--no-grid", action="store_true", help="skip the neighbour grid PNG")
    group = parser.add_argument_group("recorded selections as the test set (docs/selections.md)")
    group.add_argument("--selections", metavar="SOURCE",
                       help="score the model on recorded selections instead: 'service' (the "
                            "DaCHS site's similarity.selections through TAP), a TAP URL, or an "
                            "exported VOTable/CSV/ECSV/FITS file; writes "
                            "evaluation_selections.json")
    group.add_argument("--k", type=positive_int, default=10,
                       help="the k of recall@k on selections (default: %(default)s)")
    group.add_argument("--gavo-rc", default=None, metavar="FILE",
                       help="DaCHS's settings file for --selections service (default: "
                            "$GAVOSETTINGS, else /etc/gavo.rc)")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def _interval(m: dict) -> str:
    return f"{_fmt(m['value'])} [{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]"


def _run_selections(args: argparse.Namespace) -> int:
    """Score the model on recorded selections and print them beside the baselines."""
    from vo_similarity.evaluate.selections import REPORT_NAME, evaluate_selections
    from vo_similarity.workdir import WorkDir

    site = None
    if args.selections == "service":
        from vo_similarity.publish.dachs import DachsSite

        site = DachsSite.from_config(args.gavo_rc)
    set_threads(args.threads)
    work = WorkDir(args.workdir)
    report = evaluate_selections(work, args.model, args.selections, k=args.k, site=site,
                                 device=device_name(args.device), progress=args.progress)
    first = report["metrics"]["model"]
    print(f"model {args.model!r}: {report['n_selections']} selections from {report['source']}; "
          f"{first['n_marks']} used on its {report['n_images']} images ({first['dropped']} "
          f"dropped), {first['n_queries']} queries with both kinds of marks")
    print(f"{'embedding':20s} {'pairwise accuracy [95% CI]':>28s} "
          f"{f'recall@{args.k} [95% CI]':>26s} {'model - this [95% CI]':>26s}")
    for name, m in report["metrics"].items():
        versus = report["versus"].get(name)
        print(f"{name:20s} {_interval(m['pairwise_accuracy']):>28s} "
              f"{_interval(m['recall@k']):>26s} {_interval(versus) if versus else '':>26s}")
    print(f"metrics: {work.model(args.model).root / REPORT_NAME}")
    return EXIT_OK


@reports_errors("evaluate")
def run(args: argparse.Namespace) -> int:
    """Evaluate the model ``--model`` and print its metrics beside the baselines."""
    require_trained(args.workdir, args.model)
    if args.selections:
        return _run_selections(args)

    from vo_similarity.evaluate.evaluate import InvarianceTransform, evaluate_model
    from vo_similarity.workdir import WorkDir

    set_threads(args.threads)
    work = WorkDir(args.workdir)
    report = evaluate_model(work, args.model, split=args.split, device=device_name(args.device),
                            transform=InvarianceTransform(seed=args.seed),
                            max_images=args.max_images, grid=not args.no_grid,
                            progress=args.progress)
    print(f"model {args.model!r}, split {report['split']}, {report['n_images']} images")
    print(f"{'embedding':24s} {'invariance':>10s} {'mean rank':>9s} {'P@10':>6s} {'mAP':>6s} "
          f"{'category P@10 (held-out, 95% CI)':>33s}")
    for name, m in report["metrics"].items():
        inv = m["invariance"]
        cat = m.get("category_precision@10", {}).get("held_out")
        cat_text = (f"{cat['macro']:.3f} [{cat['ci_low']:.3f}, {cat['ci_high']:.3f}]"
                    if cat else "-")
        print(f"{name:24s} {_fmt(inv['top1']):>10s} {inv['mean_rank']:9.1f} "
              f"{_fmt(m.get('precision@10')):>6s} {_fmt(m.get('mAP')):>6s} {cat_text:>33s}")
    model_dir = work.model(args.model)
    print(f"metrics: {model_dir.evaluation}")
    if not args.no_grid:
        print(f"grid: {model_dir.evaluation_grid}")
    return EXIT_OK
