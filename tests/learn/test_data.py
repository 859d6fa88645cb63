import numpy as np
import pytest
import torch

from vo_similarity.learn.data import is_validation, load_images
from vo_similarity.workdir import WorkDir


def test_split_depends_only_on_the_id():
    ids = np.arange(10_000)
    val = is_validation(ids, 0.2)
    assert 0.18 < val.mean() < 0.22
    assert np.array_equal(is_validation(ids[5000:], 0.2), val[5000:])
    assert not is_validation(ids, 0.0).any()


def test_selection_and_on_demand_reading(tiny_workdir):
    everything = load_images(tiny_workdir)
    small = load_images(tiny_workdir, category="small")
    assert len(everything) == 48 and len(small) == 24 and (small.image_ids % 2 == 1).all()
    raw = np.load(tiny_workdir.pixels)
    assert torch.equal(small.pixels[3], torch.from_numpy(raw[small.image_ids[3]].astype(np.float32)))
    batch = small.pixels[torch.tensor([0, 5])]
    assert batch.shape == (2, 1, 16, 16) and batch.dtype == torch.float32
    assert small.pixels.all().shape == (24, 1, 16, 16)
    train = load_images(tiny_workdir, split="train", val_fraction=0.25)
    val = load_images(tiny_workdir, split="val", val_fraction=0.25)
    assert set(train.image_ids).isdisjoint(val.image_ids)
    assert len(train) + len(val) == 48
    assert set(val.labels) <= {"bar", "ring", "pair"}


def test_clear_errors(tmp_path, tiny_workdir):
    with pytest.raises(FileNotFoundError, match="vo-similarity ingest"):
        load_images(WorkDir(tmp_path / "empty"))
    with pytest.raises(ValueError, match="split"):
        load_images(tiny_workdir, split="test")
