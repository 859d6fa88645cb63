"""A throwaway GAVO DaCHS instance: its own PostgreSQL cluster, root directory and port.

The test suite and the benchmarks publish into one of these, never into the
operator's DaCHS (``/etc/gavo.rc``, ``/var/gavo``, port 8080), so running them
leaves a published service exactly as it was, and both can run at once.

DaCHS reads its settings file from the environment variable ``GAVOSETTINGS``
(and a per-user file from ``GAVOCUSTOM``); a scratch instance writes its own
settings file and exports both to every ``dachs`` process it starts. Its
PostgreSQL cluster is made with ``initdb`` in a temporary folder, listens on
127.0.0.1 only, on a free port, with a random superuser password; ``dachs
init`` then creates DaCHS's roles and tables there (6–12 s to the first TAP
answer on 2 cores).

Start and stop need root, as ``scripts/setup_dachs.sh`` does: PostgreSQL runs
as ``postgres``, DaCHS's server drops to ``gavo``. An instance left behind by a
killed process is stopped and removed by the next :meth:`ScratchDachs.start`
(:func:`remove_stale`).

Example::

    with ScratchDachs.start() as scratch:
        site = scratch.site()                 # a DachsSite for publish()
        subprocess.run(["dachs", "test", "similarity/q"], env=scratch.environ())
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .dachs import DachsError, DachsSite, write_settings

__all__ = ["ScratchDachs", "processes_using", "remove_stale"]

log = logging.getLogger(__name__)

#: Folders of scratch instances are ``<tmp>/PREFIX*``; ``owner.pid`` inside names the
#: process that made one, so that a later start can tell a stale one.
PREFIX = "vo-similarity-dachs-"
#: Inside such a folder: DaCHS's settings file, DaCHS's root, PostgreSQL's data.
_SETTINGS, _ROOT, _PG_DATA = "gavo.rc", "gavo", "pg"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL server's ``bin`` folder (Debian layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise DachsError("no PostgreSQL server is installed (/usr/lib/postgresql/*/bin/initdb); "
                         "run scripts/setup_dachs.sh --packages-only as root")
    return Path(found[-1]).parent


def _as_postgres(*args: str | os.PathLike[str], timeout: float = 120) -> None:
    cmd = ["runuser", "-u", "postgres", "--", *map(str, args)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise DachsError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is dead for our purpose
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def processes_using(text: str) -> list[int]:
    """Live processes whose command line or environment contains ``text``.

    DaCHS's server names its settings only in its environment
    (``GAVOSETTINGS``), PostgreSQL its data folder on its command line.
    """
    found = []
    needle = text.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (needle in (proc / "cmdline").read_bytes()
                    or needle in (proc / "environ").read_bytes()) and _alive(int(proc.name)):
                found.append(int(proc.name))
    return found


@dataclass
class ScratchDachs:
    """A running scratch DaCHS instance (see the module docstring).

    Attributes:
        base: the folder holding everything (settings, DaCHS root, PostgreSQL data).
        http_port: DaCHS's port on 127.0.0.1.
        pg_port: PostgreSQL's port on 127.0.0.1.
        authority: the IVOA authority of the instance's publisher DIDs.
    """

    base: Path
    http_port: int
    pg_port: int
    authority: str

    # -- places ----------------------------------------------------------------
    @property
    def settings(self) -> Path:
        return self.base / _SETTINGS

    @property
    def root(self) -> Path:
        return self.base / _ROOT

    @property
    def pg_data(self) -> Path:
        return self.base / _PG_DATA

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def environ(self) -> dict[str, str]:
        """The environment variables that point DaCHS (and :class:`DachsSite`) here."""
        env = self.site().environ()
        return {key: env[key] for key in ("GAVOSETTINGS", "GAVOCUSTOM")}

    def site(self) -> DachsSite:
        """The :class:`DachsSite` of this instance."""
        return DachsSite.from_config(self.settings)

    # -- life cycle --------------------------------------------------------------
    @classmethod
    def start(cls, *, authority: str = "vo-similarity.example",
              parent: str | os.PathLike[str] | None = None,
              timeout: float = 120) -> ScratchDachs:
        """Create and start a scratch instance; on failure nothing is left running.

        Args:
            authority: IVOA authority of the DIDs (must match the manifests published).
            parent: where to make its folder (default: the system's temporary folder).
            timeout: seconds to wait for the database and the web server.

        Raises:
            DachsError: not root, PostgreSQL or DaCHS missing, or a step failed.
        """
        if os.geteuid() != 0:
            raise DachsError("a scratch DaCHS instance needs root (PostgreSQL runs as "
                             "'postgres', DaCHS as 'gavo'), as scripts/setup_dachs.sh does")
        if shutil.which("dachs") is None:
            raise DachsError("GAVO DaCHS is not installed (no 'dachs' command); run "
                             "scripts/setup_dachs.sh --packages-only as root")
        pg_bin = _postgres_bin()
        where = Path(parent or tempfile.gettempdir()).resolve()
        closed = [p for p in (where, *where.parents) if not p.stat().st_mode & 0o001]
        if closed:
            raise DachsError(f"{closed[0]} is closed to other users; PostgreSQL and DaCHS "
                             f"run as 'postgres' and 'gavo' and must reach {where}")
        remove_stale(parent)
        base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        base.chmod(0o755)  # postgres and gavo must reach their folders inside
        (base / "owner.pid").write_text(f"{os.getpid()}\n")
        self = cls(base=base, http_port=_free_port(), pg_port=_free_port(),
                   authority=authority)
        try:
            self._start(pg_bin, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, pg_bin: Path, timeout: float) -> None:
        t0 = time.perf_counter()
        password = secrets.token_urlsafe(24)
        for folder in (self.base / "run", self.pg_data):
            folder.mkdir(mode=0o700)
            shutil.chown(folder, "postgres")
        pwfile = self.base / "run" / "pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres")
        _as_postgres(pg_bin / "initdb", "-D", self.pg_data, "-U", "postgres", "-E", "UTF8",
                     "--locale=C.UTF-8", "--auth-local=peer", "--auth-host=scram-sha-256",
                     f"--pwfile={pwfile}", timeout=timeout)
        pwfile.unlink()
        _as_postgres(pg_bin / "pg_ctl", "-D", self.pg_data, "-l", self.pg_data / "server.log",
                     "-w", "-t", str(int(timeout)), "-o",
                     f"-p {self.pg_port} -k {self.base / 'run'} -c listen_addresses=127.0.0.1"
                     " -c fsync=off", "start", timeout=timeout)
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.pg_port, dbname="postgres",
                             user="postgres", password=password, autocommit=True) as conn:
            conn.execute("CREATE DATABASE gavo ENCODING 'UTF8' TEMPLATE template0")
        write_settings(self.settings, root=self.root, port=self.http_port,
                       authority=self.authority)
        # The superuser's password reaches `dachs init` through a password file,
        # never on a command line or in a log.
        passfile = self.base / "pgpass"
        passfile.touch(mode=0o600)
        passfile.write_text(f"127.0.0.1:{self.pg_port}:*:postgres:{password}\n")
        self.site().run("init", "-d", f"host=127.0.0.1 port={self.pg_port} dbname=gavo "
                        "user=postgres", timeout=timeout, env={"PGPASSFILE": str(passfile)})
        passfile.unlink()
        self.site().run("serv", "start", timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/tap/availability", timeout=5) as r:
                    if b"<avl:available>true" in r.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DachsError(f"the scratch DaCHS at {self.url} did not answer within "
                                 f"{timeout:.0f} s; see {self.root / 'logs'}")
            time.sleep(0.2)
        log.info("scratch DaCHS at %s (PostgreSQL on port %d, %s) up in %.1f s",
                 self.url, self.pg_port, self.base, time.perf_counter() - t0)

    def stop(self) -> None:
        """Stop the web server and PostgreSQL and remove the folder (idempotent)."""
        _stop_folder(self.base)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _server_pid(root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((root / "state" / "web.pid").read_text().split()[0])
    return None


def _stop_folder(base: Path) -> None:
    """Stop whatever runs from the scratch folder ``base`` and remove it."""
    if not base.is_dir():
        return
    settings = base / _SETTINGS
    pid = _server_pid(base / _ROOT)
    if settings.is_file() and pid is not None and _alive(pid):
        with contextlib.suppress(DachsError, OSError, subprocess.TimeoutExpired):
            DachsSite.from_config(settings).run("serv", "stop", timeout=60)
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if (base / _PG_DATA / "postmaster.pid").is_file():
        with contextlib.suppress(DachsError, subprocess.TimeoutExpired):
            _as_postgres(_postgres_bin() / "pg_ctl", "-D", base / _PG_DATA, "-m", "fast", "-w",
                         "stop", timeout=60)
    shutil.rmtree(base, ignore_errors=True)


def remove_stale(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Stop and remove scratch instances whose owning process has died.

    Returns:
        The folders removed.
    """
    removed = []
    for base in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((base / "owner.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            owner = None
        if owner is not None and _alive(owner):
            continue
        log.warning("removing the scratch DaCHS instance %s left by process %s", base, owner)
        _stop_folder(base)
        removed.append(base)
    return removed
