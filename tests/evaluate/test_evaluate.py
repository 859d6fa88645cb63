"""Evaluation of a trained model beside its baselines."""

import json

from vo_similarity.embed.embed import load_trained
from vo_similarity.evaluate.evaluate import evaluate_model
from vo_similarity.learn.train import train


def test_evaluate_writes_metrics_beside_baselines(tiny_workdir, tiny_config):
    cfg = tiny_config.replace(epochs=3, val_fraction=0.5)
    train(tiny_workdir, cfg, tiny_workdir.model("tiny"), progress=False)
    report = evaluate_model(tiny_workdir, "tiny", progress=False)
    md = tiny_workdir.model("tiny")
    on_disk = json.loads(md.evaluation.read_text())
    assert on_disk["split"] == "val" and 0 < on_disk["n_images"] < 48
    assert set(on_disk["metrics"]) == {"model", "model_without_pooling", "untrained_network",
                                       "pixels_pca"}
    for metrics in report["metrics"].values():
        assert 0 <= metrics["invariance"]["top1"] <= 1
        assert 0 <= metrics["precision@10"] <= 1 and 0 <= metrics["mAP"] <= 1
    assert md.evaluation_grid.stat().st_size > 10_000
    cfg_back, _ = load_trained(md)
    assert cfg_back == cfg


def test_evaluate_scores_the_manifest_categories_on_their_held_out_half(tiny_workdir, tiny_config):
    # the tiny manifest's categories: "small" and "large", 24 images each (>= 20)
    train(tiny_workdir, tiny_config, tiny_workdir.model("tiny"), progress=False)
    report = evaluate_model(tiny_workdir, "tiny", grid=False, progress=False)
    for name, metrics in report["metrics"].items():
        by_category = metrics["category_precision@10"]
        assert by_category["classes"] == {"large": 24, "small": 24}, name
        held = by_category["held_out"]
        assert held["n_queries"] + by_category["tuning"]["n_queries"] == 48
        assert held["ci_low"] <= held["macro"] <= held["ci_high"]
        assert set(held["per_class"]) == {"large", "small"}
