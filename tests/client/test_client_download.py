"""download_images: the files behind access_url, named sensibly, cached, with progress."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from astropy.table import Table
from pyvo.dal import DALQueryError
from requests import HTTPError

pytestmark = [pytest.mark.dachs]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _published_file(service, did: str) -> Path:
    """The file DaCHS serves for ``did`` (in the instance's resource directory)."""
    row = service.manifest[list(service.manifest["obs_publisher_did"]).index(did)]
    found = list((service.site.resdir / "data" / "images").glob(f"{int(row['image_id'])}.*"))
    assert len(found) == 1, found
    return found[0]


def test_downloads_the_files_of_a_result(service, client, tmp_path, capsys):
    similar = client.query_similar(service.manifest[0]["obs_publisher_did"], n=6)
    files = client.download_images(similar, path=tmp_path / "imgs")
    assert [f.parent for f in files] == [tmp_path / "imgs"] * 6
    for path, did, obs_id in zip(files, similar["obs_publisher_did"], similar["obs_id"],
                                 strict=True):
        assert path.name.startswith(obs_id.replace("/", "_"))
        assert path.suffix in (".png", ".jpg", ".fits")
        assert _sha(path) == _sha(_published_file(service, did))
    assert "Downloading 6 images" in capsys.readouterr().out  # the progress bar


def test_cached_files_are_not_fetched_again(service, client, sent, tmp_path):
    table = client.query_outliers(n=3)
    first = client.download_images(table, path=tmp_path, show_progress=False)
    before = len(sent)
    again = client.download_images(table, path=tmp_path, show_progress=False)
    assert again == first and len(sent) == before
    first[0].write_bytes(b"")  # an empty file is no cache
    client.download_images(table, path=tmp_path, show_progress=False)
    assert len(sent) == before + 1 and first[0].stat().st_size > 0
    client.download_images(table, path=tmp_path, cache=False, show_progress=False)
    assert len(sent) == before + 4
    assert not list(tmp_path.glob("*.part"))


def test_default_folder_is_the_cache_location(service, client, tmp_path):
    client.cache_location = tmp_path / "cache"
    files = client.download_images(client.query_outliers(n=1), show_progress=False)
    assert files[0].parent == tmp_path / "cache" / "images" and files[0].is_file()


def test_same_names_are_numbered(service, client, tmp_path):
    row = client.query_outliers(n=1)
    twice = Table(rows=[row[0], row[0]], names=row.colnames)
    files = client.download_images(twice, path=tmp_path, show_progress=False)
    assert len(set(files)) == 2 and all(f.is_file() for f in files)


def test_a_missing_file_is_an_http_error(service, client, tmp_path):
    table = Table({"access_url": [f"{service.url}/getproduct/similarity/data/images/nope.png"],
                   "obs_id": ["nope"]})
    with pytest.raises(HTTPError, match="404|Not Found"):
        client.download_images(table, path=tmp_path, show_progress=False)
    assert not list(tmp_path.iterdir())


def test_server_errors_pass_through_with_the_server_message(service, client):
    with pytest.raises(DALQueryError, match="similarity.nonesuch"):
        client.query_tap("SELECT * FROM similarity.nonesuch")
