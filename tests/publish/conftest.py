"""Fixtures for the publish tests: the local DaCHS and a published sample.

Tests marked ``dachs`` need the server that ``scripts/setup_dachs.sh`` brings
up.  Where it does not answer they fail with the reason under CI (env
``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import re

import pytest
from publish_helpers import MODELS, N_IMAGES, K, Published, run_publish
from real_components import need

from vo_similarity.publish.dachs import DachsError, DachsSite
from vo_similarity.publish.sample import make_sample_workdir


def _need_server(reason: str):
    need(f"these tests need the local DaCHS server: {reason}")


@pytest.fixture(scope="session")
def site() -> DachsSite:
    site = DachsSite.from_config()
    try:
        site.check_installed()
        site.check_running()
    except DachsError as exc:
        _need_server(str(exc))
    return site


@pytest.fixture(scope="session")
def published(site, tmp_path_factory) -> Published:
    """The sample work dir, published through the command line once per session."""
    work = make_sample_workdir(tmp_path_factory.mktemp("publish") / "work",
                               n=N_IMAGES, k=K, models=MODELS, seed=5)
    proc = run_publish(str(work.root))
    match = re.search(r"^(SELECT .*?^ORDER BY rank)$", proc.stdout, re.DOTALL | re.MULTILINE)
    assert match, f"no ADQL query in the output of publish:\n{proc.stdout}"
    return Published(work, proc.stdout, match.group(1))
