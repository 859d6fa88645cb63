"""SAMP from the client: tables to the real TOPCAT, images to the real Aladin.

One throwaway desktop per module (tests/desktop.py: Xvfb, an in-process
pyvo hub, Debian's TOPCAT and Aladin; 7-9 s to start on 2 cores). Arrival is
checked by asking the receivers, never by trusting our own return values:
TOPCAT hands back the table it holds (``table.get.stil``) and finds it by
table-id (``table.highlight.row``); Aladin describes the image it shows
(``script.aladin.send`` "status"). After every test the hub holds exactly
the desktop's own clients (the client left no registration behind), and after
the module no process, hub lock file or display of the desktop is left.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astroquery.exceptions import InvalidQueryError
from desktop import Desktop, programs_missing
from real_components import need

from vo_similarity.client import samp
from vo_similarity.client.samp import (
    SampDeliveryError,
    SampHubNotFoundError,
    SampMixin,
    SampRecipientError,
    SentTable,
)

#: the tests that use the desktop (its start costs ~8 s once per module)
slow = pytest.mark.slow

#: the test image: 32 x 32 pixels of 1 arcsec, centred on the Crab nebula
IMAGE_CENTRE = SkyCoord(83.63308 * u.deg, 22.0145 * u.deg)
PIXEL = 1 * u.arcsec


class Client(SampMixin):
    """The SAMP half of the client alone: these tests need no service."""


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    missing = programs_missing()
    if missing:
        need(f"the SAMP tests need Debian's xvfb, topcat and aladin "
             f"(scripts/setup_desktop.sh); missing: {', '.join(missing)}")
    home = tmp_path_factory.mktemp("desktop")
    with pytest.MonkeyPatch.context() as mp:
        desk = Desktop.start(home)
        try:
            mp.setenv("SAMP_HUB", desk.environ()["SAMP_HUB"])  # how our client finds the hub
            desk.start_topcat()
            desk.start_aladin()
            # the hub itself, TOPCAT and Aladin: what must be there after each test
            desk.own_clients = desk.registered()
            assert len(desk.own_clients) == 3 and set(desk.app_ids.values()) < desk.own_clients
            yield desk
        finally:
            desk.stop()
    left = desk.leftovers()
    assert not left, "the SAMP desktop left things behind: " + "; ".join(left)


@pytest.fixture()
def samp_client(desktop) -> Client:
    """A client of the desktop's hub; after the test the hub holds only the desktop's clients."""
    yield Client()
    assert desktop.registered() == desktop.own_clients, \
        "a SAMP registration outlived the client's call"


def results_table(n: int = 5) -> Table:
    """A result table with the columns, units and text of ``similarity.similar_by_model``."""
    rng = np.random.default_rng(3)
    table = Table({
        "rank": np.arange(1, n + 1, dtype=np.int16),
        "dist": np.sort(rng.uniform(0.1, 0.9, n)).astype(np.float32),
        "obs_publisher_did": [f"ivo://vo-similarity.example/~?stellarium/img{i}"
                              for i in range(n)],
        "obs_id": [f"stellarium/img{i}" for i in range(n)],
        "target_name": ["M 1", "NGC 1976", "", "IC 434", "M 31"][:n],
        "s_ra": rng.uniform(0, 360, n), "s_dec": rng.uniform(-90, 90, n),
        "s_fov": rng.uniform(0.01, 2, n).astype(np.float32),
        "access_url": [f"http://127.0.0.1:8080/getproduct/img{i}.png" for i in range(n)],
    })
    for col, unit in (("s_ra", u.deg), ("s_dec", u.deg), ("s_fov", u.deg)):
        table[col].unit = unit
    table["dist"].description = "Euclidean distance of the unit embeddings"
    return table


def write_fits_image(path: Path) -> Path:
    """A real FITS image with a celestial WCS: a Gaussian at IMAGE_CENTRE."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [IMAGE_CENTRE.ra.deg, IMAGE_CENTRE.dec.deg]
    wcs.wcs.crpix = [16.5, 16.5]  # the centre of 32 pixels (FITS counts from 1)
    wcs.wcs.cdelt = [-PIXEL.to_value(u.deg), PIXEL.to_value(u.deg)]
    y, x = np.mgrid[:32, :32]
    data = np.exp(-((x - 15.5) ** 2 + (y - 15.5) ** 2) / 30).astype(np.float32)
    fits.PrimaryHDU(data, header=wcs.to_header()).writeto(path)
    return path


# -- tables to TOPCAT ---------------------------------------------------------

@slow
def test_a_sent_table_arrives_in_topcat_with_its_units(desktop, samp_client):
    table = results_table()
    sent = samp_client.send_table(table, name="similar to M 1")
    assert isinstance(sent, SentTable) and sent.n_rows == len(table)
    assert sent.recipients == (desktop.client_id("topcat"),)
    back = desktop.topcat_table(sent.table_id, sent.url)
    assert back.colnames == table.colnames
    for col in table.colnames:
        assert back[col].unit == table[col].unit, col
        if table[col].dtype.kind in "US":
            assert [str(v) if not np.ma.is_masked(v) else "" for v in back[col]] == list(table[col])
        else:
            np.testing.assert_array_equal(np.asarray(back[col]), np.asarray(table[col]))
    assert back["dist"].description == table["dist"].description


@slow
def test_topcat_knows_a_table_only_by_the_id_it_was_sent_with(desktop, samp_client):
    sent = samp_client.send_table(results_table(3))
    reply = desktop.topcat_highlight(sent.table_id + "-other", "file:///nowhere.vot", 0,
                              settle=0)
    assert reply["samp.status"] == "samp.error"  # the check above can fail


@slow
def test_the_recipient_is_matched_case_insensitively(desktop, samp_client):
    sent = samp_client.send_table(results_table(2), to="TOPCAT")
    assert sent.recipients == (desktop.client_id("topcat"),)


@slow
def test_to_none_sends_to_every_client_that_takes_tables(desktop, samp_client):
    start = time.monotonic()
    sent = samp_client.send_table(results_table(2), to=None, name="to all")
    # Aladin takes tables too, but never replies to a load call: it was notified,
    # not waited for (a call would have waited out samp_timeout)
    assert time.monotonic() - start < samp_client.samp_timeout / 2
    assert set(sent.recipients) == {desktop.client_id("topcat"), desktop.client_id("aladin")}
    plane = desktop.aladin_plane("to all", need=("NbObj",))
    assert (plane["Type"], plane["NbObj"]) == ("Catalog", "2")
    assert desktop.topcat_highlight(sent.table_id, sent.url, 1)["samp.status"] == "samp.ok"


@slow
def test_pyvo_results_are_sent_as_their_table(desktop, samp_client):
    from astropy.io.votable import from_table

    votable = from_table(results_table(4))  # has .to_table(), as pyvo's results do
    sent = samp_client.send_table(votable.get_first_table(), name="from a VOTable")
    assert sent.n_rows == 4
    assert len(desktop.topcat_table(sent.table_id, sent.url)) == 4


# -- highlighting -------------------------------------------------------------

@slow
def test_highlight_row_reaches_topcat(desktop, samp_client):
    table = results_table()
    sent = samp_client.send_table(table)
    samp_client.highlight_row(sent, 3)
    samp_client.highlight_row(sent, table[4])  # an astropy Row of the sent table
    samp_client.highlight_row(sent, np.int64(0), to="Topcat")


@slow
def test_highlight_of_a_table_topcat_never_got_is_an_error(desktop, samp_client):
    samp_client.samp_settle = 0.3  # TOPCAT will never find it: retry briefly
    ghost = SentTable("vo-similarity-table-never-sent", "file:///nowhere.vot", "ghost", 5, ())
    with pytest.raises(SampDeliveryError, match="No table with table-id"):
        samp_client.highlight_row(ghost, 1)


@pytest.mark.parametrize("row", [-1, 5, 2.0, True, "1"])
def test_highlight_of_a_row_outside_the_table_is_refused_before_sending(row):
    sent = SentTable("t", "file:///t.vot", "t", 5, ())
    with pytest.raises(InvalidQueryError, match="row"):
        Client().highlight_row(sent, row)


def test_highlight_needs_what_send_table_returned():
    with pytest.raises(InvalidQueryError, match="send_table"):
        Client().highlight_row("vo-similarity-table-1", 0)


# -- images to Aladin ---------------------------------------------------------

@slow
def test_a_fits_image_arrives_in_aladin_with_its_wcs(desktop, samp_client, tmp_path):
    path = write_fits_image(tmp_path / "crab.fits")
    sent = samp_client.send_image(path, name="crab-file")
    assert sent.url == path.resolve().as_uri()
    assert sent.recipients == (desktop.client_id("aladin"),)
    plane = desktop.aladin_plane("crab-file", need=("Width", "Height", "Target"))
    assert (plane["Width"], plane["Height"]) == ("32", "32")
    centre = SkyCoord(plane["Target"], unit=(u.hourangle, u.deg))
    # Aladin read the WCS: its centre of the image is ours, up to where a
    # program puts the centre of an even number of pixels (half a pixel per
    # axis: sqrt(2)/2 pixel; measured 0.70")
    assert centre.separation(IMAGE_CENTRE) <= np.sqrt(2) / 2 * PIXEL * 1.01


@slow
def test_a_result_rows_access_url_is_sent(desktop, samp_client, tmp_path):
    path = write_fits_image(tmp_path / "row.fits")
    table = results_table(2)
    table["access_url"] = [path.as_uri(), "http://127.0.0.1:8080/unused.fits"]
    table["obs_id"] = ["crab-row", "other"]
    sent = samp_client.send_image(table[0])
    assert (sent.url, sent.name) == (path.as_uri(), "crab-row")
    plane = desktop.aladin_plane("crab-row", need=("Url",))
    assert plane["Url"] == f"file:{path}"  # Aladin's spelling of the file URL


@slow
def test_an_image_to_a_client_that_takes_no_images_is_refused(desktop, samp_client, tmp_path):
    path = write_fits_image(tmp_path / "x.fits")
    with pytest.raises(SampRecipientError, match="does not accept image.load.fits.*Aladin"):
        samp_client.send_image(path, to="topcat")


@pytest.mark.parametrize("bad, message", [
    ("/no/such/image.fits", "no such image file"),
    ({"obs_id": "x"}, "no access_url"),
    ({"access_url": ""}, "access_url is empty"),
    ({"access_url": "img.fits"}, "not a URL"),
    (42, "send_image needs"),
])
def test_bad_images_are_refused_before_sending(bad, message):
    with pytest.raises(InvalidQueryError, match=message):
        Client().send_image(bad)


# -- errors -------------------------------------------------------------------

def test_an_image_that_cannot_be_downloaded_is_an_error_before_sending():
    with pytest.raises(OSError):  # urllib's URLError: connection refused
        Client().send_image(f"http://127.0.0.1:{free_port()}/x.fits", download=True)


@slow
def test_an_unknown_recipient_is_a_clear_error(desktop, samp_client):
    with pytest.raises(SampRecipientError) as info:
        samp_client.send_table(results_table(2), to="ds9")
    text = str(info.value)
    assert "no client called 'ds9' is on the SAMP hub" in text
    assert "topcat" in text and "Aladin" in text  # who is there
    with pytest.raises(SampRecipientError, match="ds9"):
        samp_client.send_image("http://127.0.0.1/x.fits", to="ds9")
    with pytest.raises(LookupError, match="ds9"):
        samp_client.highlight_row(SentTable("t", "file:///t.vot", "t", 1, ()), 0, to="ds9")


@pytest.mark.parametrize("to", ["", "  ", 3])
def test_a_recipient_that_is_no_name_is_refused_before_sending(to):
    for call in (lambda: Client().send_table(results_table(1), to=to),
                 lambda: Client().send_image("http://127.0.0.1/x.fits", to=to),
                 lambda: Client().highlight_row(SentTable("t", "file:///t", "t", 1, ()), 0, to=to)):
        with pytest.raises(InvalidQueryError, match="to must be"):
            call()


def test_a_list_is_not_a_table():
    with pytest.raises(InvalidQueryError, match="astropy Table"):
        Client().send_table([[1, 2], [3, 4]])


def test_without_a_hub_every_call_says_to_start_topcat_or_aladin(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:file://{tmp_path}/no-hub.samp")
    monkeypatch.setenv("HOME", str(tmp_path))
    client = Client()
    calls = [lambda: client.send_table(results_table(1)),
             lambda: client.send_image("http://127.0.0.1/x.fits"),
             lambda: client.highlight_row(SentTable("t", "file:///t.vot", "t", 1, ()), 0)]
    for call in calls:
        with pytest.raises(SampHubNotFoundError, match="Start TOPCAT or Aladin") as info:
            call()
        assert isinstance(info.value, ConnectionError)
        assert "no-hub.samp" in str(info.value)


def free_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_lock_file_of_a_hub_that_is_gone_means_no_hub(monkeypatch, tmp_path):
    port = free_port()
    lock = tmp_path / "stale.samp"
    lock.write_text(f"samp.secret=0123\nsamp.hub.xmlrpc.url=http://127.0.0.1:{port}/\n"
                    "samp.profile.version=1.3\n")
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:file://{lock}")
    with pytest.raises(SampHubNotFoundError, match="Start TOPCAT or Aladin"):
        Client().send_image("http://127.0.0.1/x.fits")


@slow
def test_sent_files_are_removed_on_request(desktop, samp_client):
    sent = samp_client.send_table(results_table(1))
    path = Path(sent.url.removeprefix("file://"))
    assert path.is_file()
    samp.remove_sent_files()
    assert not path.exists() and not path.parent.exists()
    samp_client.send_table(results_table(1))  # a new folder for the next one


def test_the_client_class_has_the_samp_methods():
    from vo_similarity.client import SimilarityClass

    assert issubclass(SimilarityClass, SampMixin)


# -- a real result of the service ---------------------------------------------

@slow
@pytest.mark.dachs
def test_a_real_result_goes_to_topcat_and_its_image_to_aladin(desktop, service, client):
    """query_similar against the published built-in sample, then TOPCAT and Aladin."""
    did = str(service.manifest[0]["obs_publisher_did"])
    result = client.query_similar(did, n=10)
    assert len(result) == 10
    sent = client.send_table(result, name="similar to the first image")
    assert sent.recipients == (desktop.client_id("topcat"),)
    back = desktop.topcat_table(sent.table_id, sent.url)
    assert back.colnames == result.colnames
    assert [back[c].unit for c in back.colnames] == [result[c].unit for c in result.colnames]
    assert list(back["obs_publisher_did"]) == list(result["obs_publisher_did"])
    client.highlight_row(sent, result[3])

    # The service's access_url is an HTTP URL, which Debian's Aladin 12 cannot
    # fetch offline (it looks such URLs up in a dictionary it gets from CDS):
    # the client downloads the image and sends the file.
    access_url = str(result[0]["access_url"])
    assert access_url.startswith(service.url)
    assert client.send_image(result[0]).url == access_url  # as it is, by default
    image = client.send_image(result[0], download=True)
    assert image.url.startswith("file://") and image.name == str(result[0]["obs_id"])
    with urllib.request.urlopen(access_url, timeout=60) as response:
        assert Path(image.url.removeprefix("file://")).read_bytes() == response.read()
    assert image.url.endswith("/" + access_url.rsplit("/", 1)[-1])  # the file keeps its name
    # the sample's images are colour PNG: an RGB plane (which lists no size)
    plane = desktop.aladin_plane(url=image.url.replace("file://", "file:"), need=("Type",))
    assert plane["Type"] == "RGB"
    assert desktop.registered() == desktop.own_clients
