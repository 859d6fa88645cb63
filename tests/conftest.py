"""Suite-wide set-up.

The tests' own DaCHS instance, and proof that the operator's is untouched
-----------------------------------------------------------------------

Before anything else, ``GAVOSETTINGS`` is pointed at a settings file that does
not exist, so that no test can reach the operator's DaCHS (``/etc/gavo.rc``)
by accident: :meth:`DachsSite.from_config` refuses a missing settings file. The
``dachs_scratch`` fixture then starts a throwaway instance (its own PostgreSQL
cluster, root directory and ports; :mod:`vo_similarity.publish.scratch`) the
first time a test needs one, points ``GAVOSETTINGS`` at it, and stops and
removes it at the end of the session. The published built-in sample that the
client and the web tests share (fixture ``service``) comes from
``tests/services.py``.

At the start and the end of the session the state of the operator's instance
(every row of its schemas, its settings and resource files, whether it
answers) is recorded; any difference, or a scratch process still running
after the suite, fails the run.

A tiny labelled work directory
------------------------------
Simple shapes at random orientations and a tiny training config, for the
learning, embedding, evaluation and tuning tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from real_components import need
from scratch_instances import STARTED, register
from services import service, web_service  # noqa: F401 -- session fixtures of tests/client, tests/web
from tiny_work import make_workdir
from user_instance import differences, instance_state, user_site

from vo_similarity.learn.config import TrainConfig
from vo_similarity.publish.dachs import DEFAULT_SETTINGS, DachsError
from vo_similarity.publish.scratch import ScratchDachs, processes_using
from vo_similarity.workdir import WorkDir

_GUARD = Path(tempfile.gettempdir()) / "vo-similarity-tests-no-dachs" / "gavo.rc"
_user: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    os.environ["GAVOSETTINGS"] = str(_GUARD)


#: what the suite's tools would leave in the temporary folder if let: scratch
#: DaCHS instances, shared test folders, Dask's scratch space, torchrun's logs
_LEFTOVERS = ("vo-similarity-dachs-*", "vo-similarity-test-*", "dask-scratch-space",
              "torchelastic_*")


def _temporary_leftovers() -> set[str]:
    tmp = Path(tempfile.gettempdir())
    return {path.name for pattern in _LEFTOVERS for path in tmp.glob(pattern)}


def pytest_sessionstart(session: pytest.Session) -> None:
    site = user_site(DEFAULT_SETTINGS)
    if site is not None:
        _user["site"], _user["before"] = site, instance_state(site)
    _user["temporary"] = _temporary_leftovers()


def _command(pid: int) -> str:
    try:
        return f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return str(pid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    problems = []
    if "site" in _user:
        changed = differences(_user["before"], instance_state(_user["site"]))
        problems += [f"the operator's DaCHS ({DEFAULT_SETTINGS}) changed during the tests: {c}"
                     for c in changed]
    problems += [f"a process of the suite's DaCHS outlived it: {_command(pid)}"
                 for base in STARTED for pid in processes_using(str(base))]
    problems += [f"the suite left {Path(tempfile.gettempdir()) / name} behind"
                 for name in sorted(_temporary_leftovers() - _user.get("temporary", set()))]
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in problems:
            if reporter is not None:
                reporter.write_line(f"ERROR: {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def dachs_scratch() -> ScratchDachs:
    """The suite's own DaCHS instance, started on first use, removed at the end."""
    try:
        scratch = ScratchDachs.start()
    except DachsError as exc:
        need(f"these tests need their own DaCHS instance: {exc}")
    register(scratch)
    saved = {key: os.environ.get(key) for key in ("GAVOSETTINGS", "GAVOCUSTOM")}
    os.environ.update(scratch.environ())
    try:
        yield scratch
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        scratch.stop()


# -- a tiny labelled work directory (tests/tiny_work.py) -----------------------

@pytest.fixture()
def tiny_workdir(tmp_path) -> WorkDir:
    return make_workdir(tmp_path / "work")


@pytest.fixture()
def tiny_config() -> TrainConfig:
    return TrainConfig(name="tiny", width=4, image_size=16, batch_size=16, epochs=2,
                       warmup_epochs=1, pool_rotations=2, precision="fp32", projection_dim=16)


# -- a real Dask cluster for the --cluster tests ---------------------------------

@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """Two worker processes, one thread each, on loopback; gone after the module.

    Dask's scratch folder is pytest's, for this process and the workers (its
    default, ``/tmp/dask-scratch-space``, would stay behind with lock files).

    They are started without the session's GAVOSETTINGS and GAVOCUSTOM (they
    may name a scratch DaCHS by then): multiprocessing's resource tracker, which the workers'
    start leaves running until pytest exits, would otherwise count as a
    process of that DaCHS in the end-of-session check (pytest_sessionfinish).
    """
    distributed = pytest.importorskip("distributed")
    import dask

    scratch = str(tmp_path_factory.mktemp("dask"))
    saved = {key: os.environ.pop(key) for key in ("GAVOSETTINGS", "GAVOCUSTOM")
             if key in os.environ}
    with pytest.MonkeyPatch.context() as patch, dask.config.set({"temporary-directory": scratch}):
        patch.setenv("DASK_TEMPORARY_DIRECTORY", scratch)
        try:
            local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None,
                                             worker_dashboard_address=None)
        finally:
            os.environ.update(saved)
        with local:
            yield local

