"""``vo-similarity train``: train the SimCLR model of one name (and category)."""

from __future__ import annotations

import argparse
import os

from vo_similarity.cli_common import (
    EXIT_OK,
    UsageError,
    add_common,
    existing_file,
    reports_errors,
    require_ingested,
    require_trained,
    set_threads,
)

#: command-line flag -> config field, for the hyperparameters settable without a file
_OVERRIDES = {
    "category": "category", "epochs": "epochs", "batch_size": "batch_size",
    "learning_rate": "learning_rate", "seed": "seed", "stem": "stem", "width": "width",
    "image_size": "image_size", "backbone": "backbone", "pool_rotations": "pool_rotations",
    "val_fraction": "val_fraction", "precision": "precision",
    "selection_weight": "selection_weight",
}

#: the selection weight ``--selections`` trains with when neither the config nor
#: ``--selection-weight`` sets one
DEFAULT_SELECTION_WEIGHT = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``vo-similarity train``."""
    add_common(parser)
    parser.add_argument("--config", metavar="FILE", type=existing_file,
                        help="JSON config (e.g. tune's best_config.json); flags override it")
    parser.add_argument("--category", help="train on this manifest category only")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", "--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--backbone", choices=["resnet18", "resnet50"])
    parser.add_argument("--stem", choices=["unstrided", "halved", "stock"])
    parser.add_argument("--width", type=int, help="channels of the first ResNet stage")
    parser.add_argument("--image-size", type=int, help="side in pixels the network sees")
    parser.add_argument("--pool-rotations", type=int,
                        help="average embeddings over this many rotations x flips (0: off)")
    parser.add_argument("--val-fraction", type=float, help="fraction of images held out")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--canonical", action=argparse.BooleanOptionalAction, default=None,
                        help="centre and zoom each image to its canonical frame before the "
                             "network (config key canonical.enabled; on in the default config)")
    group = parser.add_argument_group("selections (fine-tuning with recorded marks, docs/learning.md)")
    group.add_argument("--selections", metavar="SOURCE",
                       help="add the supervised contrastive term over recorded selections: "
                            "'service' (the DaCHS site's similarity.selections), a TAP URL, or "
                            "an exported file (.xml/.vot, .csv, .ecsv, .fits)")
    group.add_argument("--init-from", metavar="MODEL",
                       help="start from the weights of this trained model of WORKDIR "
                            "(fine-tuning); its config is the base unless --config is given")
    group.add_argument("--selection-weight", type=float,
                       help="weight of the selection term beside SimCLR's (default: the "
                            f"config's, else {DEFAULT_SELECTION_WEIGHT} with --selections)")
    parser.add_argument("--restart", action="store_true",
                        help="discard an existing checkpoint instead of resuming from it")
    parser.add_argument("--shipped", action="store_true",
                        help="do not train: install the checkpoint shipped with the package")


def starting_config(args: argparse.Namespace):
    """The --config file, else (with --init-from) that model's config, else the defaults."""
    from vo_similarity.learn.config import TrainConfig
    from vo_similarity.workdir import WorkDir

    if args.config:
        return TrainConfig.load(args.config)
    if getattr(args, "init_from", None):
        return TrainConfig.load(WorkDir(args.workdir).model(args.init_from).config)
    return TrainConfig()


def build_config(args: argparse.Namespace):
    """:func:`starting_config`, then explicit flags; the name is --model. With
    --selections and no selection weight set anywhere, the weight is
    :data:`DEFAULT_SELECTION_WEIGHT`."""
    cfg = starting_config(args)
    changes = {field: getattr(args, flag) for flag, field in _OVERRIDES.items()
               if getattr(args, flag, None) is not None}
    if getattr(args, "canonical", None) is not None:
        changes["canonical"] = {"enabled": args.canonical}
    if (getattr(args, "selections", None) and cfg.selection_weight == 0
            and "selection_weight" not in changes):
        changes["selection_weight"] = DEFAULT_SELECTION_WEIGHT
    return cfg.replace(name=args.model, **changes)


@reports_errors("train")
def run(args: argparse.Namespace) -> int:
    """Train (or install the shipped checkpoint as) the model ``--model``."""
    from vo_similarity.workdir import WorkDir

    work = WorkDir(args.workdir)
    if args.shipped:
        from vo_similarity.learn.pretrained import install_shipped

        model_dir = install_shipped(work, args.model)
        print(f"installed the shipped checkpoint as model {args.model!r}: {model_dir.weights}")
        return EXIT_OK
    init_from = getattr(args, "init_from", None)
    if init_from is not None:
        if init_from == args.model:
            raise UsageError(f"--init-from {init_from} names the model being trained; give "
                             "the fine-tuned model another --model")
        require_trained(args.workdir, init_from)
    if getattr(args, "selection_weight", None) is not None and not args.selections:
        raise UsageError("--selection-weight needs --selections")
    try:
        cfg = build_config(args)
    except ValueError as exc:  # a flag's value the config refuses
        raise UsageError(str(exc)) from exc
    require_ingested(args.workdir)

    selections = None
    if args.selections:
        from vo_similarity.publish.collections import collection_of
        from vo_similarity.selections import read_selections
        from vo_similarity.workdir import WorkDir

        selections = read_selections(args.selections,
                                     collection=collection_of(WorkDir(args.workdir)))
        if not len(selections):
            raise ValueError(f"{args.selections} holds no selection")

    from vo_similarity.learn.train import train

    set_threads(args.threads)
    model_dir = work.model(cfg.name)
    result = train(work, cfg, model_dir, device=args.device, progress=args.progress,
                   restart=args.restart, selections=selections,
                   init_weights=work.model(init_from).weights if init_from else None)
    if int(os.environ.get("RANK", "0")) != 0:
        return EXIT_OK  # under torchrun only rank 0 reports
    if result.losses:
        print(f"model {cfg.name!r} (category {cfg.category or 'all'}): {len(result.losses)} epochs, "
              f"final loss {result.losses[-1]:.4f}, {result.seconds:.0f} s this run, "
              f"{result.images_per_second:.0f} images/s")
    if result.selection_losses:
        info = result.inputs["selections"]
        print(f"selections: {info['marks']} marks ({info['dropped_marks']} dropped) -> "
              f"{info['pairs']} pairs of {info['queries']} queries, weight "
              f"{cfg.selection_weight:g}, final selection term {result.selection_losses[-1]:.4f}")
    if init_from:
        print(f"fine-tuned from model {init_from!r}")
    print(f"weights: {model_dir.weights}\nloss curve: {model_dir.loss_plot}")
    return EXIT_OK
