"""Parts of publishing that need no server: sample data, COPY encoding, checks."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from vo_similarity.ingest.manifest import read_manifest
from vo_similarity.publish.copy import COPY_HEADER, COPY_TRAILER, encode_copy_rows
from vo_similarity.publish.dachs import DachsError, DachsSite
from vo_similarity.publish.publisher import WorkDirIncomplete, check_workdir
from vo_similarity.publish.queries import adql_string, similar_images_query
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.workdir import PIXELS_DIGEST


def _decode(buf: bytes, k: int):
    """A straightforward (slow) reader of the binary COPY rows we write."""
    rows, pos = [], 0
    while pos < len(buf):
        (nfields,) = struct.unpack_from(">h", buf, pos)
        pos += 2
        assert nfields == 5
        _, model = struct.unpack_from(">ih", buf, pos); pos += 6
        _, image = struct.unpack_from(">ii", buf, pos); pos += 8
        _, outlier = struct.unpack_from(">if", buf, pos); pos += 8
        arrays = []
        for code in ("i", "f"):
            length, ndim, hasnull, _oid, dim, lb = struct.unpack_from(">6i", buf, pos)
            assert (ndim, hasnull, dim, lb, length) == (1, 0, k, 1, 20 + 8 * k)
            values = struct.unpack_from(">" + ("i" + code) * k, buf, pos + 24)
            assert values[0::2] == (4,) * k
            arrays.append(values[1::2])
            pos += 4 + length
        rows.append((model, image, outlier, *arrays))
    return rows


def test_encode_copy_rows_is_postgres_binary_format():
    ids = np.array([7, 3], np.int32)
    nb = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    dist = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    rows = _decode(encode_copy_rows(2, ids, nb, dist, np.array([1.5, 2.5], np.float32)), 3)
    assert [(r[0], r[1], r[2]) for r in rows] == [(2, 7, 1.5), (2, 3, 2.5)]
    assert rows[1][3] == (4, 5, 6)
    np.testing.assert_allclose(rows[0][4], [0.1, 0.2, 0.3], rtol=1e-6)
    assert COPY_HEADER.startswith(b"PGCOPY\n\xff\r\n\0") and len(COPY_HEADER) == 19
    assert COPY_TRAILER == b"\xff\xff"


def test_encode_copy_rows_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes disagree"):
        encode_copy_rows(1, np.arange(2), np.zeros((2, 3)), np.zeros((2, 4)))


def test_check_workdir_names_what_is_missing(tmp_path):
    work = make_sample_workdir(tmp_path / "w", n=12, k=4)
    assert [m.name for m in check_workdir(work)] == ["sample"]
    work.model("sample").neighbour_dist.unlink()
    with pytest.raises(WorkDirIncomplete, match="neighbours_dist.npy is missing"):
        check_workdir(work)
    with pytest.raises(WorkDirIncomplete, match="no manifest"):
        check_workdir(type(work)(tmp_path / "empty"))


def test_check_workdir_refuses_embeddings_of_other_pixels(tmp_path):
    work = make_sample_workdir(tmp_path / "w", n=12, k=4)
    table = read_manifest(work.manifest)
    table.meta[PIXELS_DIGEST] = "a" * 64            # what ingest recorded
    table.write(work.manifest, format="ascii.ecsv", overwrite=True)
    source = work.model("sample").embedding_source
    source.write_text(json.dumps({PIXELS_DIGEST: "a" * 64}))
    assert [m.name for m in check_workdir(work)] == ["sample"]
    source.write_text(json.dumps({PIXELS_DIGEST: "b" * 64}))  # embedded before a re-ingest
    with pytest.raises(WorkDirIncomplete, match="sample: its embeddings come from other pixels"):
        check_workdir(work)


def test_server_not_running_is_a_clear_error(tmp_path):
    site = DachsSite(root=tmp_path, url="http://127.0.0.1:9", authority="x")
    with pytest.raises(DachsError, match="does not answer.*setup_dachs.sh"):
        site.check_running(timeout=2)


def test_query_quotes_dids():
    assert adql_string("a'b") == "'a''b'"
    q = similar_images_query("ivo://x/~?it's", 3, top=5)
    assert "TOP 5" in q and "'ivo://x/~?it''s'" in q and q.endswith("ORDER BY rank")


@pytest.mark.parametrize("text", [
    "adql=SELECT TOP 1 * FROM t WHERE did = 'ivo://x/~?a'",
    'adql=SELECT "quoted" FROM t WHERE a = \'$(touch /tmp/pwned)\'',
    "adql=`id` \\ ! '",
])
def test_printed_stilts_argument_is_one_shell_word(text):
    import shlex

    from vo_similarity.publish.cli import _shell_word

    assert shlex.split(_shell_word(text)) == [text]
