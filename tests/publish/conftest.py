"""Fixtures for the publish tests: the suite's own DaCHS and a published sample.

Tests marked ``dachs`` publish into the scratch instance of the session
(``dachs_scratch`` in tests/conftest.py), never into the operator's DaCHS.
Where it cannot be started they fail with the reason under CI (env
``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import re

import pytest
from publish_helpers import MODELS, N_IMAGES, K, Published, publication_state, run_publish
from real_components import need

from vo_similarity.publish.dachs import DachsError, DachsSite
from vo_similarity.publish.sample import make_sample_workdir


@pytest.fixture(scope="session")
def site(dachs_scratch) -> DachsSite:
    site = dachs_scratch.site()
    try:
        site.check_installed()
        site.check_running()
    except DachsError as exc:
        need(f"these tests need their own DaCHS server: {exc}")
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


@pytest.fixture(autouse=True)
def _published_set_unchanged(request):
    """A test that uses the published sample leaves it as it found it.

    So every test sees the same publication whatever ran before it (the suite
    runs in random order); a test that changes it must put it back.
    """
    if "published" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("published")  # autouse fixtures run first: publish before looking
    site = request.getfixturevalue("site")
    before = publication_state(site)
    yield
    assert publication_state(site) == before, (
        f"{request.node.name} left the published sample changed")
