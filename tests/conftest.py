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

import numpy as np
import pytest
from astropy.table import Table
from real_components import need
from scratch_instances import STARTED, register
from services import service, web_service  # noqa: F401 -- session fixtures of tests/client, tests/web
from user_instance import differences, instance_state, user_site

from vo_similarity.learn.config import TrainConfig
from vo_similarity.publish.dachs import DEFAULT_SETTINGS, DachsError
from vo_similarity.publish.scratch import ScratchDachs, processes_using
from vo_similarity.workdir import WorkDir

_GUARD = Path(tempfile.gettempdir()) / "vo-similarity-tests-no-dachs" / "gavo.rc"
_user: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    os.environ["GAVOSETTINGS"] = str(_GUARD)


def pytest_sessionstart(session: pytest.Session) -> None:
    site = user_site(DEFAULT_SETTINGS)
    if site is not None:
        _user["site"], _user["before"] = site, instance_state(site)


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


# -- a tiny labelled work directory ------------------------------------------

CLASSES = ("bar", "ring", "pair")


def draw(cls: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of a bar, a ring or a pair of dots, randomly rotated and placed."""
    y, x = (np.mgrid[:size, :size] - (size - 1) / 2) / (size / 2)
    x = x - rng.uniform(-0.1, 0.1)
    y = y - rng.uniform(-0.1, 0.1)
    a = rng.uniform(0, np.pi)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    if cls == "bar":
        img = np.exp(-(u / 0.6) ** 2 - (v / 0.12) ** 2)
    elif cls == "ring":
        img = np.exp(-((np.hypot(u, v) - 0.5) / 0.1) ** 2)
    else:
        img = np.exp(-(((u - 0.4) ** 2 + v**2) / 0.03)) + np.exp(-(((u + 0.4) ** 2 + v**2) / 0.03))
    img = img + rng.normal(0, 0.03, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_workdir(root, n: int = 48, size: int = 16, seed: int = 0) -> WorkDir:
    """Write manifest.ecsv + pixels.npy following the work-directory contract."""
    rng = np.random.default_rng(seed)
    work = WorkDir(root).ensure()
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    pixels = np.stack([draw(c, rng, size)[None] for c in labels]).astype(np.float16)
    np.save(work.pixels, pixels)
    Table({
        "image_id": np.arange(n, dtype=np.int32),
        "obs_publisher_did": [f"ivo://test/~?img{i}" for i in range(n)],
        "obs_id": [f"img{i}" for i in range(n)],
        "target_name": [f"T{i}" for i in range(n)],
        "s_ra": np.zeros(n), "s_dec": np.zeros(n), "s_fov": np.full(n, 0.01),
        "category": ["small" if i % 2 else "large" for i in range(n)],
        "credit": ["test suite"] * n,
        "source_path": [""] * n,
        "label": labels,
    }).write(work.manifest, format="ascii.ecsv")
    return work


@pytest.fixture()
def tiny_workdir(tmp_path) -> WorkDir:
    return make_workdir(tmp_path / "work")


@pytest.fixture()
def tiny_config() -> TrainConfig:
    return TrainConfig(name="tiny", width=4, image_size=16, batch_size=16, epochs=2,
                       warmup_epochs=1, pool_rotations=2, precision="fp32", projection_dim=16)
