import json

import numpy as np
import torch

from vo_similarity.learn.embed import embed_workdir, load_trained
from vo_similarity.learn.evaluate import evaluate_model
from vo_similarity.learn.model import build_model, embed_tensor
from vo_similarity.learn.train import train
from vo_similarity.workdir import PIXELS_DIGEST, file_sha256


def test_embeddings_are_unit_vectors_with_ids(tiny_workdir, tiny_config):
    train(tiny_workdir, tiny_config, tiny_workdir.model("tiny"), progress=False)
    vectors, ids = embed_workdir(tiny_workdir, "tiny", batch_size=8, progress=False)
    assert vectors.dtype == np.float32 and vectors.shape == (48, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert ids.dtype == np.int32 and np.array_equal(ids, np.arange(48))
    md = tiny_workdir.model("tiny")
    assert np.array_equal(np.load(md.embeddings), vectors)
    assert np.array_equal(np.load(md.embedding_ids), ids)
    source = json.loads(md.embedding_source.read_text())
    assert source == {PIXELS_DIGEST: file_sha256(tiny_workdir.pixels)}
    # a batch size that splits the images differently gives the same vectors
    again, _ = embed_workdir(tiny_workdir, "tiny", batch_size=5, progress=False)
    assert np.allclose(again, vectors, atol=1e-5)


def test_group_pooling_is_exactly_invariant(tiny_config):
    cfg = tiny_config.replace(pool_rotations=4)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images = torch.rand(3, 1, 16, 16)
    turned = torch.rot90(images, 1, dims=(2, 3)).flip(3)
    a, b = embed_tensor(model, images, cfg), embed_tensor(model, turned, cfg)
    assert torch.allclose(a, b, atol=1e-4)
    plain_a = embed_tensor(model, images, cfg, pool_rotations=0)
    plain_b = embed_tensor(model, turned, cfg, pool_rotations=0)
    assert not torch.allclose(plain_a, plain_b, atol=1e-3)


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


def test_exported_checkpoint_installs_and_embeds_alike(tiny_workdir, tiny_config, tmp_path):
    from vo_similarity.learn.pretrained import export_shipped, install_shipped

    train(tiny_workdir, tiny_config, tiny_workdir.model("tiny"), progress=False)
    full, _ = embed_workdir(tiny_workdir, "tiny", progress=False)
    export_shipped(tiny_workdir.model("tiny"), tmp_path / "data")
    md = install_shipped(tiny_workdir, "from-shipped", source=tmp_path / "data")
    assert load_trained(md)[0].name == "from-shipped"
    half, _ = embed_workdir(tiny_workdir, "from-shipped", progress=False)
    assert np.abs(half - full).max() < 2e-2


def test_shipped_checkpoint_is_the_default_recipe():
    """The docs promise the shipped checkpoint is TrainConfig() trained on the built-in
    sample: changing a default means retraining it (docs/learning.md, "Shipped checkpoint")."""
    from vo_similarity.learn.config import TrainConfig
    from vo_similarity.learn.pretrained import SHIPPED_CONFIG

    shipped = TrainConfig.load(SHIPPED_CONFIG)
    assert shipped.replace(name="default").to_dict() == TrainConfig().to_dict()
