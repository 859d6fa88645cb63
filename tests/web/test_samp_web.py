"""SAMP from the browser: the page registers with a real hub through the Web Profile.

A pyvo ``SAMPHubServer`` with the Web Profile on (port 21012: the profile
fixes it, so one such hub per machine; a lock serialises concurrent test
runs, and a port held by anything else skips the test) and a consent dialog
that approves every registration (DESIGN §6a: without one the hub asks on
standard input). A pyvo client on the same hub receives what the page sends;
the table's URL is fetched and read as a VOTable, and its rows are compared
with what the page shows.
"""

from __future__ import annotations

import io
import queue
import re
import socket
import threading
import time

import pytest
import requests
from astropy.table import Table
from real_components import need
from webpage import did_of

pytestmark = [pytest.mark.dachs, pytest.mark.slow]

WEB_PROFILE_PORT = 21012
#: a cross-process mutex (Linux abstract socket, freed when its holder dies) for
#: the one Web Profile port of the machine
LOCK = "\0vo-similarity-samp-web-profile"
MTYPES = ("table.load.votable", "image.load.fits")


def _port_free(port: int) -> bool:
    for host in ("127.0.0.1", "localhost"):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _lock(timeout: float = 300) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.bind(LOCK)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                sock.close()
                need("another test run holds the SAMP Web Profile port for more than 5 min")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def web_profile_hub(tmp_path_factory):
    """A Web Profile hub that approves every web client; ``.received`` gets the messages."""
    from pyvo.samp import SAMPHubServer, SAMPIntegratedClient, conf
    from pyvo.samp.hub import WebProfileDialog

    class Approve(WebProfileDialog):
        """The consent dialog of the hub, answering yes at once."""

        def __init__(self) -> None:
            self.running = True

        def show_dialog(self, *args) -> None:
            self.consent()

        def poll(self) -> None:
            while self.running:
                self.handle_queue()
                time.sleep(0.05)

    lock = _lock()
    home = tmp_path_factory.mktemp("samp-web")
    use_internet = conf.use_internet
    conf.use_internet = False
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("SAMP_HUB", f"std-lockurl:file://{home / '.samp'}")
        try:
            if not _port_free(WEB_PROFILE_PORT):
                need(f"port {WEB_PROFILE_PORT} (the SAMP Web Profile) is taken by another "
                     "program, e.g. a running TOPCAT or Aladin")
            dialog = Approve()
            poller = threading.Thread(target=dialog.poll, daemon=True)
            poller.start()
            server = SAMPHubServer(lockfile=str(home / ".samp"), web_profile=True,
                                   web_profile_dialog=dialog)
            server.start(wait=False)
            server.home = home  # for a TOPCAT on this hub (fixture topcat)
            receiver = SAMPIntegratedClient(name="vo-similarity test receiver")
            receiver.connect(hub=server)
            server.received = queue.Queue()

            def notified(private_key, sender_id, mtype, params, extra):
                server.received.put((mtype, params))

            def called(private_key, sender_id, msg_id, mtype, params, extra):
                server.received.put((mtype, params))
                receiver.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

            for mtype in MTYPES:
                receiver.bind_receive_notification(mtype, notified)
                receiver.bind_receive_call(mtype, called)
            try:
                yield server
            finally:
                receiver.disconnect()
                server.stop()
                dialog.running = False
                poller.join(10)
        finally:
            conf.use_internet = use_internet
            lock.close()
    assert _port_free(WEB_PROFILE_PORT), "the hub left its Web Profile port open"


@pytest.fixture()
def hub(web_profile_hub):
    """The module's hub, with nothing received yet."""
    while not web_profile_hub.received.empty():
        web_profile_hub.received.get_nowait()
    return web_profile_hub


def receive(hub, mtype: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, params = hub.received.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {mtype} message reached the hub's receiver") from None
        if got == mtype:
            return params


def votable(url: str) -> Table:
    reply = requests.get(url, timeout=120)
    assert reply.status_code == 200, reply.text[:500]
    return Table.read(io.BytesIO(reply.content), format="votable")


def test_the_neighbours_go_to_a_table_client_as_a_votable_url(tab, web, service, hub):
    did = did_of(service, 90)
    tab.open({"id": did, "model": 1})
    tab.page.click("#samp-topcat")
    params = receive(hub, "table.load.votable")
    assert params["url"].startswith(service.tap_url + "/sync?")
    table = votable(params["url"])
    expected = web.all_neighbours(did)
    assert list(table["obs_publisher_did"]) == [r["obs_publisher_did"] for r in expected]
    assert list(table["rank"]) == list(range(1, len(expected) + 1))
    assert list(table["obs_publisher_did"][:len(tab.dids())]) == tab.dids()
    tab.wait_until("document.getElementById('samp-status').textContent.includes('sent')")
    # the receiver, and TOPCAT where test_the_table_arrives_in_the_real_topcat started it
    assert re.search(r"\b[12] recipients?\b", tab.text("#samp-status"))


def test_with_the_same_target_left_out_the_table_leaves_it_out_too(tab, web, service, hub):
    did = did_of(service, 91)
    tab.open({"id": did, "model": 1, "same": "0.5"})
    tab.page.click("#samp-topcat")
    table = votable(receive(hub, "table.load.votable")["url"])
    kept = web.all_neighbours(did, exclude_radius=0.5)
    assert list(table["obs_publisher_did"]) == [r["obs_publisher_did"] for r in kept]


def test_a_refined_page_goes_as_its_rows(tab, web, service, hub):
    did = did_of(service, 92)
    tab.open({"id": did, "model": 1})
    dids = tab.dids()
    for d in dids[:2]:
        tab.page.click(tab.tile(d) + " .mark-similar")
    tab.click("#refine")
    tab.page.click("#samp-topcat")
    table = votable(receive(hub, "table.load.votable")["url"])
    assert sorted(table["obs_publisher_did"]) == sorted(tab.dids())


@pytest.fixture(scope="module")
def topcat(web_profile_hub):
    """The real TOPCAT (tests/desktop.py) under Xvfb, a client of the Web Profile hub."""
    from desktop import Desktop, programs_missing, start_xvfb, stop_group

    missing = [p for p in programs_missing() if p != "aladin"]
    if missing:
        need(f"TOPCAT under Xvfb needs Debian's {', '.join(missing)} "
             "(scripts/setup_desktop.sh)")
    home = web_profile_hub.home
    xvfb, display = start_xvfb(home)
    desk = Desktop(home=home, display=display, xvfb=xvfb, hub=web_profile_hub)
    try:
        desk.start_topcat()
        yield desk
    finally:
        desk.stop_app("topcat")
        stop_group(xvfb)
    assert not [x for x in desk.leftovers() if "hub" not in x], desk.leftovers()


def test_the_table_arrives_in_the_real_topcat(tab, web, service, hub, topcat):
    did = did_of(service, 94)
    tab.open({"id": did, "model": 1})
    tab.page.click("#samp-topcat")
    params = receive(hub, "table.load.votable")
    held = topcat.topcat_table(params["table-id"], params["url"])  # TOPCAT's own copy
    assert list(held["obs_publisher_did"]) == [r["obs_publisher_did"]
                                               for r in web.all_neighbours(did)]
    tab.wait_until("document.getElementById('samp-status').textContent.includes('sent')")
    assert "2 recipients" in tab.text("#samp-status")


def test_the_query_image_goes_to_an_image_client(tab, web, service, hub):
    did = did_of(service, 93)
    tab.open({"id": did, "model": 1})
    tab.page.click("#samp-aladin")
    params = receive(hub, "image.load.fits")
    image = web.image(did)
    assert params["url"] == image["access_url"]
    reply = requests.get(params["url"], timeout=60)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == image["access_format"]
