"""Continuous improvement end to end: simulated astronomers on the web page, then ``improve``.

On a synthetic sky published with its web page in a scratch DaCHS of its own:

1. train a model with the default recipe (fewer epochs: ``--epochs``), embed it, compute
   its neighbours and publish it;
2. let ``--people`` simulated astronomers (notion ``--notion``, 10 % mistakes) mark
   ``--marks`` images in all through the page's record path;
3. run ``improve`` (fine-tuning, the gate, republishing) and print its decision with the
   held-out pairwise accuracy before and after, the paired 95 % interval of the gain and the
   invariance before and after;
4. delete those selections, let the same people mark at random, run ``improve`` again: it
   must refuse.

    python benchmarks/improve.py [--n 900] [--epochs 60] [--marks 500] [--notion class+size]

Prints one block per step and the seconds each took; the figures go to
benchmarks/RESULTS.md ("Learning from selections").
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from vo_similarity.embed.embed import embed_workdir
from vo_similarity.improve import ImproveOptions, improve
from vo_similarity.ingest.pipeline import ingest
from vo_similarity.ingest.preprocess import PreprocessConfig
from vo_similarity.ingest.synthetic import write_sky
from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.train import train
from vo_similarity.neighbours.store import compute_model_neighbours
from vo_similarity.publish.publisher import publish
from vo_similarity.publish.scratch import ScratchDachs
from vo_similarity.selections.page_client import PageClient
from vo_similarity.selections.simulate import Astronomer, simulate_selections
from vo_similarity.workdir import WorkDir

MODEL = "sky"


def _mark(work: WorkDir, page: str, args, notion: str, seed: int) -> int:
    written = 0
    for person in range(args.people):
        who = Astronomer(seed=seed + person, notion=notion, marks_per_query=args.per_query)
        # one address per person: the page's rate limit counts per address
        with PageClient(page, source_address=f"127.0.11.{seed + person + 1}") as client:
            written += simulate_selections(work, page, model=MODEL,
                                           n_marks=args.marks // args.people, astronomer=who,
                                           client=client)
    return written


def _report(title: str, result, seconds: float) -> None:
    print(f"\n{title}: {result.decision} ({seconds:.0f} s)\n  {result.reason}")
    sel = result.selections
    if "held_out" in sel:
        print(f"  marks: {sel['training']} for training, {sel['held_out']} held out on "
              f"{sel['held_out_queries']} query images")
    if result.scores:
        g, inv = result.scores["pairwise_accuracy"], result.scores["invariance"]
        print(f"  held-out pairwise accuracy {g['before']:.3f} -> {g['after']:.3f}, gain "
              f"{g['value']:+.3f} [95% CI {g['ci_low']:+.3f}, {g['ci_high']:+.3f}] on "
              f"{g['n_queries']} queries; invariance {inv['before']:.3f} -> {inv['after']:.3f}"
              f" (required {inv['required']:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=900, help="images of the synthetic sky")
    parser.add_argument("--size", type=int, default=64, help="pixels of the stored images")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of the first model")
    parser.add_argument("--marks", type=int, default=500)
    parser.add_argument("--people", type=int, default=4)
    parser.add_argument("--per-query", type=int, default=5)
    parser.add_argument("--notion", default="class+size", choices=["class", "class+size"])
    parser.add_argument("--fine-tune-epochs", type=int, default=20)
    parser.add_argument("--selection-weight", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="fine-tuning learning rate (default: improve's, a quarter of the model's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp, ScratchDachs.start() as scratch:
        work = WorkDir(Path(tmp) / "work").ensure()
        t0 = time.perf_counter()
        ingest(write_sky(work.synthetic, args.n, seed=1, size=args.size), work,
               PreprocessConfig(size=args.size), progress=False)
        cfg = TrainConfig(name=MODEL, epochs=args.epochs, image_size=min(64, args.size))
        train(work, cfg, work.model(MODEL), device=args.device, progress=False)
        embed_workdir(work, MODEL, progress=False)
        compute_model_neighbours(work.model(MODEL), 100, progress=False)
        site = scratch.site()
        publish(work, site, progress=False)
        print(f"{args.n} images, model {cfg.backbone} width {cfg.width}, {cfg.image_size} px, "
              f"{args.epochs} epochs, published ({time.perf_counter() - t0:.0f} s)")
        page = f"{scratch.url}/similarity/q/web/custom/"
        options = ImproveOptions(epochs=args.fine_tune_epochs, learning_rate=args.learning_rate,
                                 selection_weight=args.selection_weight, device=args.device)

        for notion, seed in ((args.notion, 10), ("random", 50)):
            with site.connect() as conn:
                conn.execute("DELETE FROM similarity.selections")
                conn.commit()
            t0 = time.perf_counter()
            written = _mark(work, page, args, notion, seed)
            print(f"\n{args.people} astronomers ({notion}) recorded {written} marks through the "
                  f"page ({time.perf_counter() - t0:.0f} s)")
            t0 = time.perf_counter()
            result = improve(work, MODEL, options, site=site)
            _report(f"improve after the {notion} marks", result, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
