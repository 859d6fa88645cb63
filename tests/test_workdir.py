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
