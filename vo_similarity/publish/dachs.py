"""Talking to the local GAVO DaCHS: its command, its database, its web server.

DaCHS (Demleitner et al. 2014, Astronomy and Computing 7, 27) keeps its
configuration below a root directory (``/var/gavo`` on Debian): the database
credentials of the ``gavoadmin`` role in ``etc/feed`` (which includes
``etc/dsn``), input resource directories in ``inputs/``.  This module finds
those, runs ``dachs`` sub-commands with readable errors, and opens psycopg
connections as ``gavoadmin`` over TCP for the bulk load.
"""

from __future__ import annotations

import configparser
import logging
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_SETTINGS", "RD_ID", "SCHEMA", "DachsError", "DachsSite", "settings_path",
           "write_settings"]

log = logging.getLogger(__name__)

#: The database schema of our tables and the RD's id inside DaCHS.
SCHEMA = "similarity"
RD_ID = "similarity/q"


class DachsError(RuntimeError):
    """DaCHS is missing, not running, or refused an operation."""


def _read_gavo_rc(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    return parser


def _read_key_values(path: Path, seen: set[Path] | None = None) -> dict[str, str]:
    """Parse DaCHS's profile files (``key = value`` lines, ``include NAME``)."""
    seen = seen if seen is not None else set()
    if path in seen:
        return {}
    seen.add(path)
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("include "):
            values.update(_read_key_values(path.parent / line.split(None, 1)[1], seen))
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


#: The settings file of the operator's DaCHS (scripts/setup_dachs.sh writes it).
DEFAULT_SETTINGS = Path("/etc/gavo.rc")


def settings_path(gavo_rc: str | os.PathLike[str] | None = None) -> Path:
    """The DaCHS settings file to use: ``gavo_rc`` if given, else ``$GAVOSETTINGS``,
    else ``/etc/gavo.rc`` -- the order DaCHS itself follows, an explicit choice first."""
    if gavo_rc is not None:
        return Path(gavo_rc)
    return Path(os.environ.get("GAVOSETTINGS") or DEFAULT_SETTINGS)


def write_settings(path: Path, *, root: Path, port: int, authority: str,
                   sitename: str = "vo-similarity") -> None:
    """Write a DaCHS settings file for a server on 127.0.0.1:``port``.

    The same keys as ``scripts/setup_dachs.sh`` writes into ``/etc/gavo.rc``.
    """
    text = (f"[general]\nrootDir: {root}\n\n"
            f"[web]\nbindAddress: 127.0.0.1\nserverPort: {port}\n"
            f"serverURL: http://127.0.0.1:{port}\nsitename: {sitename}\n"
            "corsOriginPat: .*\n\n"
            f"[ivoa]\nauthority: {authority}\n")
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)


@dataclass(frozen=True)
class DachsSite:
    """One DaCHS installation on this machine.

    Attributes:
        root: DaCHS's root directory (``[general]rootDir``).
        url: base URL of its web server, e.g. ``http://127.0.0.1:8080``.
        authority: its IVOA authority (``[ivoa]authority``).
        settings: its settings file; every ``dachs`` command run through
            :meth:`run` gets it as ``GAVOSETTINGS``, so it acts on this site.
    """

    root: Path
    url: str
    authority: str
    settings: Path = DEFAULT_SETTINGS

    @classmethod
    def from_config(cls, gavo_rc: str | os.PathLike[str] | None = None) -> DachsSite:
        """Read root, URL and authority from a settings file (see :func:`settings_path`).

        Raises:
            DachsError: the settings file does not exist. Falling back to
                DaCHS's defaults would silently address another instance.
        """
        path = settings_path(gavo_rc)
        if not path.is_file():
            raise DachsError(f"no DaCHS settings file {path}; run scripts/setup_dachs.sh as "
                             "root first (or name another with --gavo-rc / GAVOSETTINGS)")
        rc = _read_gavo_rc(path)
        root = Path(rc.get("general", "rootDir", fallback="/var/gavo"))
        port = rc.get("web", "serverPort", fallback="8080")
        url = rc.get("web", "serverURL", fallback=f"http://127.0.0.1:{port}")
        authority = rc.get("ivoa", "authority", fallback="x-unregistred")
        return cls(root=root, url=url.rstrip("/"), authority=authority, settings=path)

    def environ(self) -> dict[str, str]:
        """The process environment for ``dachs`` commands that act on this site."""
        env = {**os.environ, "GAVOSETTINGS": str(self.settings)}
        if self.settings != DEFAULT_SETTINGS:
            # a per-user ~/.gavorc must not redirect a non-default site elsewhere
            env["GAVOCUSTOM"] = str(self.settings.with_name("no-gavorc"))
        return env

    # -- places --------------------------------------------------------------
    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def resdir(self) -> Path:
        """Where our resource directory lives inside DaCHS's inputs."""
        return self.inputs / SCHEMA

    @property
    def tap_url(self) -> str:
        return f"{self.url}/tap"

    # -- checks --------------------------------------------------------------
    def check_installed(self) -> None:
        """Raise :class:`DachsError` unless the ``dachs`` command and root exist."""
        if shutil.which("dachs") is None or not (self.root / "etc" / "feed").is_file():
            raise DachsError(
                f"GAVO DaCHS is not installed here (no 'dachs' command or no "
                f"{self.root}/etc/feed); run scripts/setup_dachs.sh as root first"
            )

    def check_running(self, timeout: float = 5.0) -> None:
        """Raise :class:`DachsError` unless the TAP service answers."""
        try:
            with urllib.request.urlopen(f"{self.tap_url}/availability", timeout=timeout) as r:
                body = r.read()
        except (urllib.error.URLError, OSError) as exc:
            raise DachsError(
                f"the DaCHS server at {self.url} does not answer ({exc}); start it with "
                "scripts/setup_dachs.sh (or `dachs serv start`)"
            ) from exc
        if b"<avl:available>true" not in body:
            raise DachsError(f"the DaCHS server at {self.url} reports it is not available")

    # -- database ------------------------------------------------------------
    def admin_conninfo(self) -> str:
        """A libpq connection string for ``gavoadmin`` over TCP from ``etc/feed``."""
        values = _read_key_values(self.root / "etc" / "feed")
        try:
            user, password = values["user"], values["password"]
        except KeyError as exc:
            raise DachsError(f"{self.root}/etc/feed lacks {exc.args[0]!r}") from None
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            dbname=values.get("database", "gavo"),
            host=values.get("host", "localhost") or "localhost",
            port=values.get("port", "5432") or "5432",
            user=user,
            password=password,
            application_name="vo-similarity publish",
        )

    def connect(self, **kwargs):
        """Open a psycopg 3 connection as ``gavoadmin``."""
        import psycopg

        try:
            return psycopg.connect(self.admin_conninfo(), **kwargs)
        except psycopg.OperationalError as exc:
            raise DachsError(
                f"cannot connect to DaCHS's PostgreSQL database: {exc}; is PostgreSQL "
                "running (scripts/setup_dachs.sh starts it)?"
            ) from exc

    # -- the dachs command ---------------------------------------------------
    def run(self, *args: str, timeout: float = 3600, env: dict[str, str] | None = None) -> str:
        """Run ``dachs ARGS`` on this site and return its output.

        Args:
            args: the sub-command and its arguments.
            timeout: seconds before :class:`subprocess.TimeoutExpired`.
            env: extra environment variables (e.g. ``PGPASSFILE``).

        Raises:
            DachsError: the command failed; the message has its output.
        """
        cmd = ["dachs", *args]
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False, env={**self.environ(), **(env or {})})
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise DachsError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{output}")
        return output
