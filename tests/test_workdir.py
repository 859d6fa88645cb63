import pytest

from vo_similarity.workdir import atomic_write


def test_atomic_write_replaces_only_when_the_body_succeeds(tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"   # nothing visible before the end
    assert target.read_text() == "new"

    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]  # no temporary left


def test_embedded_images_are_unchanged_only_while_ingest_appends(tmp_path):
    import numpy as np

    from vo_similarity.workdir import (
        PIXELS_DIGEST,
        WorkDir,
        embedded_images_unchanged,
        embedding_source,
    )

    work = WorkDir(tmp_path / "work").ensure()
    pixels = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float16)
    np.save(work.pixels, pixels)
    source = embedding_source(work)
    assert source["images"] == 6 and embedded_images_unchanged(work, source)

    np.save(work.pixels, np.concatenate([pixels, pixels[:2]]))  # appended: still true
    assert embedded_images_unchanged(work, source)
    changed = np.concatenate([pixels, pixels[:2]])
    changed[3, 0, 1, 1] += 1  # one pixel of an embedded image
    np.save(work.pixels, changed)
    assert not embedded_images_unchanged(work, source)
    np.save(work.pixels, np.delete(pixels, 2, axis=0))  # one removed, the later renumbered
    assert not embedded_images_unchanged(work, source)

    # a record of an earlier version holds the store's digest only
    old = {PIXELS_DIGEST: source[PIXELS_DIGEST]}
    np.save(work.pixels, pixels)
    assert embedded_images_unchanged(work, old)
    np.save(work.pixels, np.concatenate([pixels, pixels[:2]]))
    assert not embedded_images_unchanged(work, old)
