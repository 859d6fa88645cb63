"""The real components the tests run against (Debian packages, the DaCHS server)."""

from __future__ import annotations

import os

import pytest


def need(what: str) -> None:
    """A real component this test needs is missing: fail under CI, skip elsewhere.

    CI (``CI=true``) installs everything the suite uses (``scripts/test.sh``), so
    a missing component there is a broken set-up, never a reason to pass quietly.
    """
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"missing under CI: {what}", pytrace=False)
    pytest.skip(what)
