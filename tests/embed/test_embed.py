"""Embeddings: unit vectors with their ids, beside the model; group pooling."""

import json

import numpy as np
import torch

from vo_similarity.embed.embed import embed_workdir
from vo_similarity.learn.model import build_model, embed_tensor
from vo_similarity.learn.train import train
from vo_similarity.workdir import PIXELS_DIGEST, file_sha256, pixel_rows_sha256


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
    assert source == {PIXELS_DIGEST: file_sha256(tiny_workdir.pixels), "images": 48,
                      "pixel_rows_sha256": pixel_rows_sha256(tiny_workdir.pixels, 48)}
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
