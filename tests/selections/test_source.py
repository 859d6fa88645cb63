"""Reading and writing recorded selections: files, and the service through pyvo TAP.

The service tests use the published test service (``service`` in
tests/services.py): rows are put into its ``similarity.selections`` as the
web page puts them (``similarity.add_selection``) and, for rows with known
times or unknown values, by a direct INSERT as DaCHS's admin; each test's rows
carry session ids of their own and are deleted afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess

import numpy as np
import pytest
from astropy.table import Table
from real_components import need
from services import MODEL

from vo_similarity.learn.data import is_validation
from vo_similarity.publish.dachs import DachsError
from vo_similarity.selections import Selections, read_selections, write_selections
from vo_similarity.selections.source import QUERY, _read_tap


def make(rows: list[tuple]) -> Selections:
    """Selections from (query, chosen, similar, session, created, model) tuples."""
    cols = list(zip(*rows)) if rows else [[]] * 6
    return Selections(*cols)


SAMPLE = make([
    (1, 2, True, "tab-a", "2026-03-01T10:00:00.000001", 1),
    (1, 3, False, "tab-a", "2026-03-01T10:00:01", 1),
    (4, 2, True, "", None, -1),
    (5, 6, False, "tab-b", "2026-03-02T00:00:00", 2),
])


def assert_same(a: Selections, b: Selections) -> None:
    for name in ("query_id", "chosen_id", "is_similar", "session_id", "created", "model_id"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=name == "created"), \
            (name, x, y)


# -- the dataclass ------------------------------------------------------------

def test_columns_are_converted_and_checked():
    assert SAMPLE.query_id.dtype == np.int64 and SAMPLE.is_similar.dtype == bool
    assert SAMPLE.created.dtype == np.dtype("datetime64[us]") and np.isnat(SAMPLE.created[2])
    assert list(SAMPLE.session_id) == ["tab-a", "tab-a", "", "tab-b"]
    assert make([(1, 2, True, None, None, -1)]).session_id[0] == ""
    with pytest.raises(ValueError, match="one length"):
        Selections([1, 2], [3], [True], [""], [None], [1])
    assert len(Selections.empty()) == 0 and Selections.empty().latest() is None
    assert "4 marks (2 similar) on 3 queries" in repr(SAMPLE)


def test_since_keeps_later_known_times_only():
    assert_same(SAMPLE.since(None), SAMPLE)
    later = SAMPLE.since(np.datetime64("2026-03-01T10:00:00.000001"))
    assert list(later.chosen_id) == [3, 6]  # strictly after; the unknown time is not after
    assert len(SAMPLE.since("2027-01-01")) == 0
    assert SAMPLE.latest() == np.datetime64("2026-03-02T00:00:00")


def test_restrict_keeps_marks_between_known_images():
    assert list(SAMPLE.restrict([1, 2, 4]).chosen_id) == [2, 2]
    assert len(SAMPLE.restrict([])) == 0


def test_in_collection_keeps_one_collections_marks_with_work_directory_ids():
    from vo_similarity.publish.collections import ID_STRIDE as S

    marks = make([(1, 2, True, "a", None, 1), (S + 1, S + 7, False, "b", None, 2),
                  (S + 3, 4, True, "c", None, 2),  # across collections: no one's
                  (2 * S, 2 * S + 5, True, "d", None, 3)])
    first, second = marks.in_collection(0), marks.in_collection(S)
    assert (list(first.query_id), list(first.chosen_id)) == ([1], [2])
    assert (list(second.query_id), list(second.chosen_id)) == ([1], [7])
    assert list(second.session_id) == ["b"] and list(second.model_id) == [2]
    assert list(marks.in_collection(2 * S).chosen_id) == [5]
    assert len(marks.in_collection(5 * S)) == 0


def test_subset_takes_masks_and_indices():
    assert list(SAMPLE.subset([3, 0]).query_id) == [5, 1]
    assert list(SAMPLE.subset(SAMPLE.is_similar).chosen_id) == [2, 2]
    with pytest.raises(ValueError, match="mask"):
        SAMPLE.subset(np.array([True, False]))


def test_split_keeps_each_querys_marks_on_one_side():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 200, 2000)
    sel = make([(int(a), int(a) + 1000, bool(a % 2), "", None, 1) for a in q])
    training, held_out = sel.split(0.3)
    assert len(training) + len(held_out) == len(sel)
    assert not set(training.query_id) & set(held_out.query_id)
    assert np.array_equal(np.unique(held_out.query_id),
                          np.unique(q[is_validation(q, 0.3)]))
    assert 0.2 < len(np.unique(held_out.query_id)) / len(np.unique(q)) < 0.4
    # the side depends on the query alone, not on the other selections
    assert set(sel.subset(slice(0, 100)).split(0.3)[1].query_id) <= set(held_out.query_id)
    with pytest.raises(ValueError, match="held_out"):
        sel.split(1.5)


# -- files --------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".ecsv", ".xml", ".vot", ".csv", ".fits"])
def test_a_written_file_reads_back_the_same(tmp_path, suffix):
    path = write_selections(SAMPLE, tmp_path / f"sel{suffix}")
    assert path == tmp_path / f"sel{suffix}" and not list(tmp_path.glob(".*tmp*"))
    assert_same(read_selections(path), SAMPLE)
    table = Table.read(path)
    assert {"model_id", "image_id", "chosen_id", "is_similar", "created",
            "session_id"} <= set(table.colnames)
    empty = write_selections(Selections.empty(), tmp_path / f"empty{suffix}")
    assert len(read_selections(empty)) == 0


def test_a_hand_written_csv_is_read(tmp_path):
    """As TOPCAT writes CSV: lower-case true/false, empty cells for nulls, any case of names."""
    path = tmp_path / "marks.csv"
    path.write_text("Model_ID,query_id,chosen_id,IS_SIMILAR,created,session_id\n"
                    "1,7,8,true,2026-01-02T03:04:05Z,s1\n"
                    ",7,9,F,,\n"
                    "2,9,7,1,2026-01-02 03:04:06.5,s2\n")
    sel = read_selections(path)
    assert list(sel.query_id) == [7, 7, 9] and list(sel.chosen_id) == [8, 9, 7]
    assert list(sel.is_similar) == [True, False, True]
    assert list(sel.model_id) == [1, -1, 2] and list(sel.session_id) == ["s1", "", "s2"]
    assert sel.created[0] == np.datetime64("2026-01-02T03:04:05")
    assert np.isnat(sel.created[1])
    assert sel.created[2] == np.datetime64("2026-01-02T03:04:06.500000")


@pytest.mark.parametrize("text, message", [
    ("image_id,is_similar\n1,true\n", "lacks the column.*chosen_id"),
    ("chosen_id,is_similar\n1,true\n", r"image_id \(or query_id\)"),
    ("image_id,chosen_id,is_similar\n1,2,maybe\n", "is_similar holds"),
    ("image_id,chosen_id,is_similar\n1,,true\n", "1 rows have no chosen_id"),
    ("image_id,chosen_id,is_similar\n1,2.5,true\n", "does not hold integer ids"),
    ("image_id,chosen_id,is_similar,created\n1,2,true,yesterday\n", "not an ISO 8601 time"),
])
def test_bad_files_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_selections(path)
    assert str(path) in str(info.value)


def test_unknown_and_missing_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file of selections"):
        read_selections(tmp_path / "nothing.ecsv")
    other = tmp_path / "sel.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="unknown kind of file '.txt'"):
        read_selections(other)
    with pytest.raises(ValueError, match="unknown kind of file"):
        write_selections(SAMPLE, tmp_path / "sel.json")
    broken = tmp_path / "broken.xml"
    broken.write_text("<VOTABLE><not closed")
    with pytest.raises(ValueError, match="not a readable votable file"):
        read_selections(broken)


def test_the_service_without_a_settings_file_says_so(tmp_path, monkeypatch):
    # not tests/conftest.py's guard alone: the publish tests' instance, once started,
    # points GAVOSETTINGS at its own settings for the rest of the session
    monkeypatch.setenv("GAVOSETTINGS", str(tmp_path / "no-such-gavo.rc"))
    with pytest.raises(DachsError, match="no DaCHS settings file"):
        read_selections("service")


def test_an_unreachable_service_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(RuntimeError, match=f"cannot read similarity.selections .*:{port}/tap"):
        read_selections(f"http://127.0.0.1:{port}/tap")


# -- the service --------------------------------------------------------------

@pytest.fixture()
def recorded(service):
    """Rows recorded in the service's selections: (sessions, expected Selections, t0, t1).

    Three through similarity.add_selection (the page's path: created = now),
    three by INSERT with known times, unknown session or time."""
    ids = [int(i) for i in service.manifest["image_id"][:8]]
    page, direct = f"sel-test-{secrets.token_hex(6)}", f"sel-test-{secrets.token_hex(6)}"
    with service.site.connect(autocommit=True) as conn:
        (t0,) = conn.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()
        for chosen, similar in ((ids[1], True), (ids[2], True), (ids[3], False)):
            conn.execute("SELECT similarity.add_selection(1::smallint, %s, %s, %s, %s)",
                         (ids[0], chosen, similar, page))
        (t1,) = conn.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()
        rows = [(ids[4], ids[5], True, direct, "2026-02-03T04:05:06.123456"),
                (ids[4], ids[6], False, direct, None),
                (ids[5], ids[7], False, None, "2026-02-03T04:05:07")]
        conn.execute("INSERT INTO similarity.selections (model_id, image_id, chosen_id, "
                     "is_similar, session_id, created) VALUES "
                     + ", ".join(["(1, %s, %s, %s, %s, %s)"] * len(rows)),
                     [v for row in rows for v in row])
    try:
        yield (page, direct), ids, np.datetime64(t0, "us"), np.datetime64(t1, "us")
    finally:
        with service.site.connect(autocommit=True) as conn:
            conn.execute("DELETE FROM similarity.selections WHERE session_id IN (%s, %s) "
                         "OR (session_id IS NULL AND image_id = %s AND chosen_id = %s)",
                         (page, direct, ids[5], ids[7]))


def _mine(sel: Selections, sessions, ids) -> Selections:
    keep = np.isin(sel.session_id, list(sessions)) | (
        (sel.session_id == "") & (sel.query_id == ids[5]) & (sel.chosen_id == ids[7]))
    return sel.subset(keep)


def _count(tap_url: str) -> int:
    import pyvo

    return int(pyvo.dal.TAPService(tap_url).run_sync(
        "SELECT COUNT(*) AS n FROM similarity.selections").to_table()["n"][0])


@pytest.mark.dachs
def test_the_service_gives_what_was_recorded(service, recorded):
    (page, direct), ids, t0, t1 = recorded
    everything = read_selections("service", site=service.site)
    assert len(everything) == _count(service.tap_url)
    sel = _mine(everything, (page, direct), ids)
    got = sorted(zip(sel.query_id.tolist(), sel.chosen_id.tolist(), sel.is_similar.tolist(),
                     sel.session_id.tolist(), sel.model_id.tolist()))
    assert got == sorted([(ids[0], ids[1], True, page, 1), (ids[0], ids[2], True, page, 1),
                          (ids[0], ids[3], False, page, 1), (ids[4], ids[5], True, direct, 1),
                          (ids[4], ids[6], False, direct, 1), (ids[5], ids[7], False, "", 1)])
    by_pair = {(q, c): t for q, c, t in zip(sel.query_id, sel.chosen_id, sel.created)}
    for chosen in ids[1:4]:  # the page's rows: the database's clock at the insert, UTC
        assert t0 <= by_pair[ids[0], chosen] <= t1
    assert by_pair[ids[4], ids[5]] == np.datetime64("2026-02-03T04:05:06.123456")
    assert np.isnat(by_pair[ids[4], ids[6]])
    assert by_pair[ids[5], ids[7]] == np.datetime64("2026-02-03T04:05:07")
    assert everything.latest() >= t0


@pytest.mark.dachs
def test_a_tap_url_and_the_settings_file_read_the_same(service, recorded, monkeypatch):
    first = read_selections("service", site=service.site)
    assert_same(read_selections(service.tap_url), first)
    monkeypatch.setenv("GAVOSETTINGS", str(service.site.settings))
    assert_same(read_selections("service"), first)


@pytest.mark.dachs
def test_files_exported_with_pyvo_and_stilts_read_as_the_service(service, recorded, tmp_path):
    """The exports docs/selections.md shows, read back to the same selections."""
    import pyvo

    (page, direct), ids, _, _ = recorded
    want = read_selections(service.tap_url)
    table = pyvo.dal.TAPService(service.tap_url).run_sync(QUERY).to_table()
    # astropy's FITS writer refuses pyvo's object columns; STILTS writes FITS, and
    # Debian's STILTS (3.4) has no working ECSV writer
    for suffix, fmt in ((".vot", "votable"), (".csv", None), (".ecsv", None)):
        path = tmp_path / f"pyvo{suffix}"
        table.write(path, format=fmt, overwrite=True)
        assert_same(read_selections(path), want)
    if shutil.which("stilts") is None:
        need("STILTS is not installed (Debian's stilts)")
    for ofmt, suffix in (("votable", ".vot"), ("csv", ".csv"), ("fits", ".fits")):
        path = tmp_path / f"stilts{suffix}"
        proc = subprocess.run(["stilts", "tapquery", f"tapurl={service.tap_url}",
                               f"adql={QUERY}", "sync=true", f"ofmt={ofmt}", f"out={path}"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        assert_same(read_selections(path), want)
    assert len(_mine(want, (page, direct), ids)) == 6


@pytest.mark.dachs
def test_a_service_that_returns_less_than_all_says_so(service, recorded):
    with pytest.raises(RuntimeError, match="at most 1 rows"):
        _read_tap(service.tap_url, maxrec=1)


@pytest.mark.dachs
def test_selection_ids_are_the_manifests_and_the_embeddings(service):
    """similarity.images.image_id (what selections name) is the manifest's image_id,
    image by image, and the model's embedding_ids are among them."""
    import pyvo

    published = pyvo.dal.TAPService(service.tap_url).run_sync(
        "SELECT image_id, obs_publisher_did FROM similarity.images", maxrec=100000).to_table()
    assert dict(zip(published["obs_publisher_did"], published["image_id"].tolist())) == \
        dict(zip(service.manifest["obs_publisher_did"], service.manifest["image_id"].tolist()))
    embedded = np.load(service.work.model(MODEL).embedding_ids)
    assert set(embedded.tolist()) <= set(published["image_id"].tolist())
