"""A throwaway desktop for the SAMP tests: Xvfb, a SAMP hub, TOPCAT and Aladin.

Everything lives in one temporary home folder: the hub's lock file is
``<home>/.samp`` and is named to pyvo by ``SAMP_HUB=std-lockurl:file://...``
(TOPCAT honours that variable; Aladin ignores it and finds the hub only as
``<user.home>/.samp``, so both the lock file's place and
``JAVA_TOOL_OPTIONS=-Duser.home=<home>`` matter). The Java programs write their
settings below that home, never into the real one.

External programs start in their own process group with standard input
closed, and are stopped by their process group (the ``topcat`` launcher is a
shell script that does not ``exec`` its ``java``): the applications first, then
the hub, then Xvfb with SIGTERM so that it removes its display lock.
:meth:`Desktop.leftovers` lists whatever outlived :meth:`Desktop.stop`.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyvo.samp import SAMPHubServer, SAMPIntegratedClient, conf
from pyvo.samp.errors import SAMPProxyError

log = logging.getLogger(__name__)

#: TOPCAT's built-in HTTP server always takes this port: one TOPCAT at a time.
TOPCAT_PORT = 2525
#: a cross-process mutex that serialises the TOPCATs of concurrent test runs: a
#: Linux abstract-namespace socket name, held by binding it; the kernel frees it
#: when the socket closes or its process dies, and it leaves no file behind
TOPCAT_LOCK = "\0vo-similarity-topcat"
#: seconds a Java program may take from start to subscribed (measured: ~3-8 s on 2 cores)
START_TIMEOUT = 90.0


def programs_missing() -> list[str]:
    """The Debian programs of the desktop that are not installed."""
    return [p for p in ("Xvfb", "topcat", "aladin", "java") if shutil.which(p) is None]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user now holds that id
        return True
    # a zombie that nobody reaped still counts as a member: look at the states
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a program started in its own process group, and everything it started.

    SIGTERM first (Xvfb removes its lock on it, Java runs its shutdown hooks,
    TOPCAT and Aladin unregister from the hub), SIGKILL after ``timeout``.
    """
    pgid = proc.pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        log.warning("process group %d ignored signal %d; killing it", pgid, sig)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=timeout)


def start_xvfb(logdir: Path) -> tuple[subprocess.Popen, int]:
    """Start Xvfb on a free display; it writes the number it took to a pipe (``-displayfd``)."""
    read_end, write_end = os.pipe()
    with open(logdir / "xvfb.log", "wb") as out:
        proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-nolisten", "tcp",
             "-screen", "0", "1280x1024x24"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            pass_fds=(write_end,), start_new_session=True)
    os.close(write_end)
    try:
        text = b""
        deadline = time.monotonic() + 30
        while not text.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                stop_group(proc)
                raise RuntimeError(f"Xvfb gave no display number in 30 s; see {logdir}/xvfb.log")
            chunk = os.read(read_end, 64)
            if not chunk:
                raise RuntimeError(f"Xvfb exited ({proc.wait()}); see {logdir}/xvfb.log")
            text += chunk
    finally:
        os.close(read_end)
    return proc, int(text)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def aladin_planes(status: str) -> dict[str, dict[str, str]]:
    """Aladin's answer to the script ``status`` as {plane name: {field: value}}.

    A plane's fields start at its ``PlaneID`` line (blank lines between planes
    are not reliable); names with spaces come quoted; the view's fields follow.
    """
    planes, fields = {}, None
    for line in status.splitlines():
        key, _, value = line.partition(" ")
        if key == "PlaneID":
            fields = planes.setdefault(value.strip().strip('"'), {})
        elif key == "ViewID":
            fields = None
        elif fields is not None and key:
            fields[key] = value.strip()
    return planes


@dataclass
class Desktop:
    """A running throwaway desktop; :meth:`start` it, :meth:`stop` it."""

    home: Path
    display: int
    xvfb: subprocess.Popen
    hub: SAMPHubServer
    apps: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: SAMP ids of the started applications, by name
    app_ids: dict[str, str] = field(default_factory=dict)
    _topcat_lock: object | None = None
    _use_internet: bool = True  # pyvo.samp's setting before start(), restored by stop()

    @property
    def lockfile(self) -> Path:
        return self.home / ".samp"

    def environ(self) -> dict[str, str]:
        """The environment of a program on this desktop (and of the tests' own SAMP clients)."""
        return {
            "HOME": str(self.home),
            "DISPLAY": f":{self.display}",
            "SAMP_HUB": f"std-lockurl:file://{self.lockfile}",
            "JAVA_TOOL_OPTIONS": f"-Duser.home={self.home} -Djava.awt.headless=false",
        }

    @classmethod
    def start(cls, home: Path) -> Desktop:
        """Xvfb, then a SAMP hub whose lock file is ``<home>/.samp``; no applications yet."""
        home.mkdir(parents=True, exist_ok=True)
        use_internet = conf.use_internet
        conf.use_internet = False  # offline: the hub must not look up anything
        xvfb, display = start_xvfb(home)
        try:
            hub = SAMPHubServer(lockfile=str(home / ".samp"), web_profile=False)
            hub.start(wait=False)
        except BaseException:
            stop_group(xvfb)
            conf.use_internet = use_internet
            raise
        return cls(home=home, display=display, xvfb=xvfb, hub=hub, _use_internet=use_internet)

    def _launch(self, name: str, argv: list[str]) -> subprocess.Popen:
        env = {**os.environ, **self.environ()}
        with open(self.home / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.apps[name] = proc
        return proc

    def start_topcat(self) -> str:
        """TOPCAT as a SAMP client of this hub; returns its client id once it subscribed."""
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # another test run's TOPCAT holds the fixed port: wait for it
            try:
                lock.bind(TOPCAT_LOCK)
                break
            except OSError:  # EADDRINUSE: the name is held
                if time.monotonic() > deadline:
                    lock.close()
                    raise RuntimeError("another test run's TOPCAT has held the TOPCAT lock "
                                       "for too long") from None
                time.sleep(0.5)
        self._topcat_lock = lock  # released by stop_app("topcat") or stop()
        if not _port_free(TOPCAT_PORT):
            raise RuntimeError(f"port {TOPCAT_PORT} is taken (a TOPCAT outside the tests?); "
                               "TOPCAT serves there, so only one can run at a time")
        proc = self._launch("topcat", ["topcat", "-nohub", "-samp"])
        self.app_ids["topcat"] = self.wait_for_client("topcat", "table.load.votable", proc)
        return self.app_ids["topcat"]

    def start_aladin(self) -> str:
        """Aladin as a SAMP client of this hub; returns its client id once it answers scripts."""
        proc = self._launch("aladin", ["aladin", "-local", "-noreleasetest", "-nolog", "-noplugin"])
        client_id = self.wait_for_client("aladin", "image.load.fits", proc)
        # Aladin subscribes before its window is built and answers scripts only after
        self.aladin_script("status", retry_until=time.monotonic() + START_TIMEOUT)
        self.app_ids["aladin"] = client_id
        return client_id

    @contextmanager
    def client(self, name: str = "desktop test") -> Iterator[SAMPIntegratedClient]:
        """A short-lived SAMP client of this hub (unregistered on exit)."""
        client = SAMPIntegratedClient(name=name, callable=False)
        client.connect(hub_params=self.hub.params)
        try:
            yield client
        finally:
            # not client.disconnect(): for a client that is not callable it
            # never unregisters (pyvo 1.9 tests is_running, false for such a client)
            client.client.unregister()
            client.hub.disconnect()

    def wait_for_client(self, name: str, mtype: str, proc: subprocess.Popen) -> str:
        """Wait until a client called ``name`` subscribes to ``mtype``, not just registers."""
        deadline = time.monotonic() + START_TIMEOUT
        with self.client() as probe:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see "
                                       f"{self.home}/{name}.log:\n{self.log(name)}")
                for cid in probe.get_subscribed_clients(mtype):
                    if probe.get_metadata(cid).get("samp.name", "").lower() == name:
                        return cid
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not subscribe to {mtype} in {START_TIMEOUT:.0f} s; "
                           f"see {self.home}/{name}.log:\n{self.log(name)}")

    def registered(self) -> set[str]:
        """The ids of every client on the hub (the hub's own included)."""
        with self.client() as probe:
            return set(probe.get_registered_clients())  # the probe itself is never listed

    def client_id(self, name: str) -> str | None:
        """The hub's id of the client called ``name`` (case-insensitive), if registered."""
        with self.client() as probe:
            for cid in probe.get_registered_clients():
                if probe.get_metadata(cid).get("samp.name", "").lower() == name.lower():
                    return cid
        return None

    def aladin_script(self, script: str, *, retry_until: float | None = None,
                      timeout: int = 30) -> dict:
        """Run an Aladin script command (``script.aladin.send``) and return its reply.

        With ``retry_until`` (a ``time.monotonic()`` deadline), retry every
        half second with short calls: Aladin subscribes before its window is
        built and fails or ignores the calls that come before.
        """
        cid = self.client_id("aladin")
        if cid is None:
            raise RuntimeError("Aladin is not on the hub")
        wait = str(5 if retry_until is not None else timeout)
        while True:
            try:
                with self.client() as probe:
                    reply = probe.ecall_and_wait(cid, "script.aladin.send", wait, script=script)
            except SAMPProxyError as exc:  # timeout: nobody answered
                reply = {"samp.status": "samp.error", "samp.error": {"samp.errortxt": str(exc)}}
            if reply.get("samp.status") == "samp.ok":
                return reply
            if retry_until is None or time.monotonic() > retry_until:
                raise RuntimeError(f"Aladin did not run {script!r}: {reply}")
            time.sleep(0.5)

    # -- what the receivers say they hold (the tests' witnesses) --------------
    def topcat_table(self, table_id: str, url: str):
        """The table TOPCAT holds as ``table_id``, as TOPCAT writes it (``table.get.stil``).

        ``table.get.stil`` hands back TOPCAT's *current* table (and answers "No
        current table" right after a load): a highlight of ``table_id`` first
        waits until TOPCAT has it and makes it the current one.
        """
        from astropy.table import Table

        reply = self.topcat_highlight(table_id, url, 0)
        assert reply["samp.status"] == "samp.ok", reply
        with self.client() as probe:
            reply = probe.ecall_and_wait(self.app_ids["topcat"], "table.get.stil", "60",
                                         format="votable")
        assert reply["samp.status"] == "samp.ok", reply
        return Table.read(reply["samp.result"]["url"], format="votable")

    def topcat_highlight(self, table_id: str, url: str, row: int, settle: float = 5,
                         patience: float = 150) -> dict:
        """TOPCAT's own reply to a highlight of ``table_id`` (ok only if it holds that table).

        Retried for ``settle`` seconds: TOPCAT replies to a load ~10-100 ms
        before it can find the table by its id.  A call that gets no reply at
        all is sent again, for ``patience`` seconds in all: in two full runs on
        2 busy cores one sync call of many went unanswered (TOPCAT's log then
        shows an "orphan reply" that the hub no longer matched to the call).
        """
        deadline = time.monotonic() + settle
        give_up = time.monotonic() + patience
        while True:
            try:
                with self.client() as probe:
                    reply = probe.ecall_and_wait(self.app_ids["topcat"], "table.highlight.row",
                                                 "30", **{"table-id": table_id, "url": url,
                                                          "row": str(row)})
            except SAMPProxyError:  # no reply in 30 s
                if time.monotonic() > give_up:
                    raise
                log.warning("TOPCAT did not answer a highlight of %s in 30 s; asking again",
                            table_id)
                continue
            if reply["samp.status"] == "samp.ok" or time.monotonic() > deadline:
                return reply
            time.sleep(0.1)

    def aladin_plane(self, name: str | None = None, *, url: str | None = None,
                     need: tuple[str, ...] = ("Width", "Height"),
                     timeout: float = 60) -> dict[str, str]:
        """Aladin's status of its plane called ``name`` (or loaded from ``url``) once loaded.

        Notifications have no reply: Aladin's status is the only witness. A
        plane appears while it loads: it is loaded when the fields ``need`` are
        there and not 0 (an image's size is 0 until it is read; its Target
        comes last). Aladin names a PNG or JPEG plane after its file.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.aladin_script("status")["samp.result"]["script.result"]
            plane = next((fields for plane_name, fields in aladin_planes(text).items()
                          if plane_name == name or (url and fields.get("Url") == url)), None)
            if plane is not None and all(plane.get(k, "0") not in ("", "0") for k in need):
                return plane
            if time.monotonic() > deadline:
                raise AssertionError(f"Aladin has no plane {name or url!r}; its status:\n{text}")
            time.sleep(0.3)

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_app(self, name: str) -> None:
        proc = self.apps.pop(name, None)
        if proc is not None:
            stop_group(proc)
        if name == "topcat":
            self._release_topcat_lock()

    def _release_topcat_lock(self) -> None:
        if self._topcat_lock is not None:
            self._topcat_lock.close()  # closing the socket frees its name
            self._topcat_lock = None

    def stop(self) -> None:
        """Applications, then the hub, then Xvfb (SIGTERM: it removes its display lock)."""
        try:
            for name in list(self.apps):
                self.stop_app(name)
        finally:
            self._release_topcat_lock()  # also when TOPCAT never started
            try:
                if self.hub.is_running:
                    self.hub.stop()
            finally:
                stop_group(self.xvfb)
                conf.use_internet = self._use_internet

    def leftovers(self) -> list[str]:
        """Whatever of this desktop outlived :meth:`stop` (empty when it cleaned up)."""
        found = []
        for name, proc in [("Xvfb", self.xvfb), *self.apps.items()]:
            if _group_alive(proc.pid):
                found.append(f"{name} (process group {proc.pid}) still runs")
        if self.hub.is_running:
            found.append("the SAMP hub still runs")
        if self.lockfile.exists():
            found.append(f"the hub's lock file {self.lockfile} is still there")
        for path in (Path(f"/tmp/.X{self.display}-lock"), Path(f"/tmp/.X11-unix/X{self.display}")):
            if path.exists():
                found.append(f"the display's {path} is still there")
        return found
