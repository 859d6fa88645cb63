"""Train and evaluate a list of recipes, several at a time, and print one row per recipe.

A plan is a JSON file::

    {"runs": [
      {"workdir": "S4_128", "name": "canon_rms1",
       "config": "benchmarks/configs/synthetic_canonical.config.json",
       "changes": {"epochs": 120, "canonical": {"radius": "rms", "nsigma": 1, "fill": 0.35}}},
      ...
    ]}

Each run is ``vo-similarity train WORKDIR --model NAME --config FILE --restart`` with the
file = ``config`` (default: the default config) updated by ``changes`` (kept as
``OUT_logs/NAME.config.json``), then
``vo-similarity evaluate WORKDIR --model NAME --no-grid`` — the package's own commands,
so a row here is what a user gets. Results go to ``--out`` as JSON lines as soon as each
run ends (a killed batch keeps the finished rows); no run starts after ``--deadline``
seconds. Used for the recipe searches of ``benchmarks/RESULTS.md`` ("Learning"), on the
CPU or, several runs sharing one GPU, on a GPU machine.

    python benchmarks/recipes.py PLAN.json --out results.jsonl --parallel 4 --threads 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vo_similarity.learn.config import TrainConfig
from vo_similarity.workdir import WorkDir


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vo_similarity.cli", *args]


def run_one(run: dict, *, threads: int | None, device: str, log_dir: Path) -> dict:
    """Train and evaluate one recipe; return its summary (``error`` set on failure).

    The full config of the run is kept beside its log (``log_dir/NAME.config.json``).
    """
    row: dict = {"name": run["name"], "workdir": run["workdir"], "changes": run.get("changes", {})}
    base = TrainConfig.load(run["config"]) if run.get("config") else TrainConfig()
    cfg = base.replace(name=run["name"], **run.get("changes", {}))
    config_file = log_dir / f"{run['name']}.config.json"
    cfg.save(config_file)
    common = ["--device", device] + (["--threads", str(threads)] if threads else [])
    log = log_dir / f"{run['name']}.log"
    steps = {
        "train_s": _command("train", run["workdir"], "--model", run["name"], "--config",
                            str(config_file), "--restart", "--no-progress", *common),
        "evaluate_s": _command("evaluate", run["workdir"], "--model", run["name"], "--no-grid",
                               *common),
    }
    with open(log, "w") as out:
        for key, step in steps.items():
            t0 = time.perf_counter()
            done = subprocess.run(step, check=False, stdout=out, stderr=subprocess.STDOUT)
            row[key] = round(time.perf_counter() - t0, 1)
            if done.returncode:
                row["error"] = f"{' '.join(step[3:5])} exited {done.returncode}; see {log}"
                return row
    report = json.loads(WorkDir(run["workdir"]).model(run["name"]).evaluation.read_text())
    row["n_images"] = report["n_images"]
    for key, metrics in report["metrics"].items():
        row[key] = {"invariance": metrics["invariance"]["top1"],
                    "precision@10": metrics.get("precision@10"), "mAP": metrics.get("mAP")}
        by_category = metrics.get("category_precision@10")
        if by_category:  # the manifest's categories (the built-in sample): tune / held out
            row[key]["category_tuning"] = by_category["tuning"]["macro"]
            row[key]["category_held_out"] = by_category["held_out"]["macro"]
    row["per_class"] = report["metrics"]["model"].get("precision@10_per_class")
    return row


def _num(value: float | None) -> float:
    return float("nan") if value is None else value


def _fmt(row: dict) -> str:
    if "error" in row:
        return f"{row['name']:28s} ERROR {row['error']}"
    m, u = row["model"], row["untrained_network"]
    p = row["pixels_pca"]
    text = (f"{row['name']:28s} {row['train_s']:7.0f} {m['invariance']:6.3f} "
            f"{_num(m['precision@10']):6.3f} {_num(m['mAP']):6.3f}   "
            f"{u['invariance']:.3f}/{_num(u['precision@10']):.3f}   "
            f"{p['invariance']:.3f}/{_num(p['precision@10']):.3f}")
    if "category_held_out" in m:
        text += (f"   category P@10 tuning/held-out {m['category_tuning']:.3f}/"
                 f"{m['category_held_out']:.3f} (untrained {u['category_held_out']:.3f}, "
                 f"pixels {p['category_held_out']:.3f})")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("plan", help="JSON file with a list 'runs'")
    parser.add_argument("--out", default="recipes.jsonl", help="JSON lines, one per finished run")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--deadline", type=float, default=None,
                        help="start no run after this many seconds")
    parser.add_argument("--only", nargs="*", help="run only these names")
    args = parser.parse_args(argv)
    runs = json.loads(Path(args.plan).read_text())["runs"]
    if args.only:
        runs = [r for r in runs if r["name"] in args.only]
    out = Path(args.out)
    log_dir = out.parent / (out.stem + "_logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"{'recipe':28s} {'train s':>7s} {'inv':>6s} {'P@10':>6s} {'mAP':>6s}   "
          "untrained inv/P@10   pixels+PCA inv/P@10", flush=True)

    def task(run: dict) -> None:
        if args.deadline is not None and time.perf_counter() - start > args.deadline:
            print(f"{run['name']:28s} skipped (deadline)", flush=True)
            return
        try:
            row = run_one(run, threads=args.threads, device=args.device, log_dir=log_dir)
        except (OSError, ValueError, KeyError) as exc:  # a bad plan entry: report, go on
            row = {"name": run.get("name", "?"), "error": f"{type(exc).__name__}: {exc}"}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(_fmt(row), flush=True)

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(task, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
