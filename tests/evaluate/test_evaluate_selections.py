"""``evaluate --selections``: a tiny model scored on recorded selections beside its baselines."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from astropy.table import Table

from vo_similarity.cli import main
from vo_similarity.embed.embed import embed_images, embed_workdir, load_trained
from vo_similarity.evaluate.selections import REPORT_NAME, current_embeddings, evaluate_selections
from vo_similarity.learn.data import load_images
from vo_similarity.learn.train import train
from vo_similarity.selections import Selections, selection_scores, write_selections

BASELINES = ("untrained_network", "pixels_pca")


def class_marks(work, n_queries: int = 12, per_kind: int = 3) -> Selections:
    """What a consistent astronomer marks on the tiny sky: same shape similar, others not."""
    table = Table.read(work.manifest)
    ids, labels = np.asarray(table["image_id"]), np.asarray(table["label"])
    rows = []
    for q in range(n_queries):
        same = [j for j in ids if labels[j] == labels[q] and j != q][:per_kind]
        other = [j for j in ids if labels[j] != labels[q]][:per_kind]
        rows += [(q, j, True) for j in same] + [(q, j, False) for j in other]
    q, c, s = zip(*rows)
    return Selections(q, c, s, ["tiny"] * len(q), [None] * len(q), [1] * len(q))


@pytest.fixture()
def trained(tiny_workdir, tiny_config):
    train(tiny_workdir, tiny_config, tiny_workdir.model("tiny"), progress=False)
    return tiny_workdir


def test_scores_beside_the_baselines_and_writes_the_report(trained):
    sel = class_marks(trained)
    foreign = Selections([0, 500], [500, 1], [True, False], ["", ""], [None, None], [1, 1])
    both = Selections(*(np.concatenate([getattr(sel, f), getattr(foreign, f)])
                        for f in ("query_id", "chosen_id", "is_similar", "session_id",
                                  "created", "model_id")))
    report = evaluate_selections(trained, "tiny", both, k=5, n_boot=200)
    on_disk = json.loads((trained.model("tiny").root / REPORT_NAME).read_text())
    assert on_disk["metrics"]["model"]["pairwise_accuracy"] == \
        report["metrics"]["model"]["pairwise_accuracy"]
    assert (report["n_images"], report["n_selections"], report["k"]) == (48, 74, 5)
    assert report["embeddings"] == "computed"  # never embedded
    assert set(report["metrics"]) == {"model", *BASELINES} and set(report["versus"]) == set(BASELINES)
    for m in report["metrics"].values():
        assert (m["n_marks"], m["dropped"], m["n_queries"], m["n_pairs"]) == (72, 2, 12, 12 * 9)
        for name in ("pairwise_accuracy", "recall@k"):
            assert 0 <= m[name]["ci_low"] <= m[name]["value"] <= m[name]["ci_high"] <= 1
    # pixels + PCA separate bars, rings and pairs of dots better than chance
    assert report["metrics"]["pixels_pca"]["pairwise_accuracy"]["value"] > 0.6
    # the model's own score is that of its embedding of the images, and versus is paired
    cfg, model = load_trained(trained.model("tiny"))
    data = load_images(trained)
    direct = selection_scores(embed_images(model, data.pixels, cfg), data.image_ids, both,
                              k=5, n_boot=200)
    assert direct["per_query_accuracy"] == pytest.approx(
        report["metrics"]["model"]["per_query_accuracy"], abs=1e-12)
    for name in BASELINES:
        v = report["versus"][name]
        assert v["after"] == pytest.approx(report["metrics"]["model"]["pairwise_accuracy"]["value"])
        assert v["before"] == pytest.approx(report["metrics"][name]["pairwise_accuracy"]["value"])
        assert v["ci_low"] <= v["value"] <= v["ci_high"]


def test_current_embeddings_are_used_and_stale_ones_are_not(trained):
    md = trained.model("tiny")
    sel = class_marks(trained)
    embed_workdir(trained, "tiny", progress=False)
    assert current_embeddings(trained, md)
    # other vectors in the file, newer than the weights: the report is theirs
    ids = np.load(md.embedding_ids)
    rng = np.random.default_rng(0)
    other = rng.normal(size=(len(ids), 8)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    np.save(md.embeddings, other)
    assert current_embeddings(trained, md)
    report = evaluate_selections(trained, "tiny", sel, n_boot=50)
    assert report["embeddings"] == "embeddings.npy"
    from_file = selection_scores(other, ids, sel, n_boot=50)
    assert report["metrics"]["model"]["per_query_accuracy"] == from_file["per_query_accuracy"]
    # weights newer than the embeddings: the model's own vectors again
    later = md.embeddings.stat().st_mtime + 10
    os.utime(md.weights, (later, later))
    assert not current_embeddings(trained, md)
    report = evaluate_selections(trained, "tiny", sel, n_boot=50)
    assert report["embeddings"] == "computed"
    cfg, model = load_trained(md)
    own = selection_scores(embed_images(model, load_images(trained).pixels, cfg), ids, sel)
    assert report["metrics"]["model"]["per_query_accuracy"] == pytest.approx(
        own["per_query_accuracy"], abs=1e-12)
    assert own["per_query_accuracy"] != from_file["per_query_accuracy"]
    # embeddings of other pixels are not current either
    os.utime(md.embeddings, (later + 10, later + 10))
    assert current_embeddings(trained, md)
    md.embedding_source.write_text(json.dumps({"pixels_sha256": "0" * 64}))
    assert not current_embeddings(trained, md)


def test_the_command_prints_the_table(trained, tmp_path, capsys):
    path = write_selections(class_marks(trained), tmp_path / "marks.vot")
    status = main(["evaluate", str(trained.root), "--model", "tiny", "--selections", str(path),
                   "--k", "5", "--threads", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "72 selections from" in out and "12 queries with both kinds of marks" in out
    assert "recall@5" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ("model", *BASELINES):
        assert name in lines
    assert len(lines["pixels_pca"].split("[")) == 4  # accuracy, recall, model - baseline
    report = json.loads((trained.model("tiny").root / REPORT_NAME).read_text())
    assert report["source"] == str(path) and report["k"] == 5
    assert f"{report['metrics']['model']['pairwise_accuracy']['value']:.3f}" in lines["model"]


@pytest.mark.parametrize("make_source, message", [
    (lambda tmp: tmp / "missing.ecsv", "no such file of selections"),
    (lambda tmp: (tmp / "bad.csv").write_text("a,b\n1,2\n") and tmp / "bad.csv",
     "lacks the column"),
    (lambda tmp: write_selections(Selections([900], [901], [True], [""], [None], [1]),
                                  tmp / "elsewhere.ecsv"), "none of the 1 selections"),
    (lambda tmp: "service", "no DaCHS settings file"),
])
def test_the_command_reports_bad_sources_in_one_line(trained, tmp_path, capsys, monkeypatch,
                                                      make_source, message):
    # a DaCHS the session started elsewhere may have set GAVOSETTINGS to its own settings
    monkeypatch.setenv("GAVOSETTINGS", str(tmp_path / "no-such-gavo.rc"))
    source = make_source(tmp_path)
    status = main(["evaluate", str(trained.root), "--model", "tiny", "--selections", str(source),
                   "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and message in err and "Traceback" not in err
    assert not (trained.model("tiny").root / REPORT_NAME).exists()
