"""``vo-similarity update`` on a work directory that gained and lost images."""

from __future__ import annotations

import numpy as np

from vo_similarity.cli import main
from vo_similarity.embed.embed import embed_workdir
from vo_similarity.learn.train import train
from vo_similarity.neighbours.search import find_neighbours
from vo_similarity.neighbours.store import compute_model_neighbours

from .conftest import assert_fp32_distances_close


def test_update_embeds_only_the_new_images_and_matches_a_full_run(tiny_workdir, tiny_config,
                                                                  capsys):
    model = tiny_workdir.model("tiny")
    train(tiny_workdir, tiny_config, model, progress=False)
    full_x, full_ids = embed_workdir(tiny_workdir, "tiny", batch_size=8, progress=False)
    # as if the model had been embedded before the last 8 images were ingested,
    # and one image that is gone now had been there
    old = slice(0, len(full_ids) - 8)
    gone_vec = full_x[:1] * -1
    np.save(model.embeddings, np.concatenate([full_x[old], gone_vec]))
    np.save(model.embedding_ids, np.concatenate([full_ids[old], [9999]]).astype(np.int32))
    compute_model_neighbours(model, 12, progress=False)
    stored = np.load(model.neighbour_ids)

    assert main(["update", str(tiny_workdir.root), "--model", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{len(full_ids)} images (8 new, 1 removed), 12 neighbours each" in out
    assert "serve them: vo-similarity publish" in out

    ids, x = np.load(model.embedding_ids), np.load(model.embeddings)
    np.testing.assert_array_equal(ids, full_ids)
    np.testing.assert_array_equal(x[old], full_x[old])  # the old ones are not embedded again
    # the new ones are those images (each nearest to its own full-run embedding)
    assert ((x[-8:] @ full_x.T).argmax(axis=1) == np.arange(len(full_ids) - 8, len(full_ids))).all()
    nb, dist = np.load(model.neighbour_ids), np.load(model.neighbour_dist)
    want_ids, want_dist = find_neighbours(x, ids, 12, backend="torch", device="cpu")
    np.testing.assert_array_equal(nb, want_ids)
    assert_fp32_distances_close(dist, want_dist, x.shape[1])
    assert not np.isin(nb, [9999]).any() and stored.shape[0] == len(full_ids) - 8 + 1
    assert np.load(model.outlier).shape == (len(full_ids),)

    # nothing new: nothing changes, and it says so
    before = {p.name: p.read_bytes() for p in model.root.glob("*.npy")}
    assert main(["update", str(tiny_workdir.root), "--model", "tiny", "--no-progress"]) == 0
    assert "(0 new, 0 removed)" in capsys.readouterr().out
    after = {p.name: p.read_bytes() for p in model.root.glob("*.npy")}
    assert before.keys() == after.keys()
    assert all(before[n] == after[n] for n in ("neighbours_ids.npy", "embedding_ids.npy"))


def test_update_without_neighbours_says_what_to_run(tiny_workdir, tiny_config, capsys):
    model = tiny_workdir.model("tiny")
    train(tiny_workdir, tiny_config, model, progress=False)
    embed_workdir(tiny_workdir, "tiny", batch_size=8, progress=False)
    assert main(["update", str(tiny_workdir.root), "--model", "tiny", "--no-progress"]) == 1
    assert "run 'vo-similarity neighbours'" in capsys.readouterr().err


def _remove_and_append(work, removed: int, added: int) -> None:
    """What ingest writes when the source of image ``removed`` is gone and ``added``
    new images came: the later images move up one id."""
    from astropy.table import Table, vstack

    from tests.tiny_work import CLASSES, draw

    pixels = np.load(work.pixels)
    table = Table.read(work.manifest, format="ascii.ecsv")
    keep = np.arange(len(table)) != removed
    rng = np.random.default_rng(7)
    fresh = np.stack([draw(CLASSES[i % 3], rng, pixels.shape[-1])[None]
                      for i in range(added)]).astype(pixels.dtype)
    extra = table[:added].copy()
    extra["obs_id"] = [f"new{i}" for i in range(added)]
    extra["obs_publisher_did"] = [f"ivo://test/~?new{i}" for i in range(added)]
    table = vstack([table[keep], extra])
    table["image_id"] = np.arange(len(table), dtype=np.int32)
    np.save(work.pixels, np.concatenate([pixels[keep], fresh]))
    table.write(work.manifest, format="ascii.ecsv", overwrite=True)


def test_update_after_images_were_renumbered_embeds_them_all_again(tiny_workdir, tiny_config,
                                                                   capsys):
    from vo_similarity.embed.embed import embed_images, load_trained
    from vo_similarity.learn.data import load_images

    model = tiny_workdir.model("tiny")
    train(tiny_workdir, tiny_config, model, progress=False)
    embed_workdir(tiny_workdir, "tiny", batch_size=8, progress=False)
    compute_model_neighbours(model, 12, progress=False)
    _remove_and_append(tiny_workdir, removed=5, added=4)

    assert main(["update", str(tiny_workdir.root), "--model", "tiny", "--no-progress"]) == 0
    assert "all embedded again" in capsys.readouterr().out
    ids, x = np.load(model.embedding_ids), np.load(model.embeddings)
    cfg, net = load_trained(model, "cpu")
    data = load_images(tiny_workdir, category=cfg.category)
    want_x = embed_images(net, data.pixels, cfg, progress=False)  # update's batches
    np.testing.assert_array_equal(ids, data.image_ids)
    # each id's embedding is that of the image it names now (not the one it named before)
    np.testing.assert_array_equal(x, want_x)
    nb, dist = np.load(model.neighbour_ids), np.load(model.neighbour_dist)
    want_ids, want_dist = find_neighbours(x, ids, 12, backend="torch", device="cpu")
    np.testing.assert_array_equal(nb, want_ids)
    assert_fp32_distances_close(dist, want_dist, x.shape[1])
