"""DaCHS's own checks on our resource: `dachs test` and STILTS taplint."""

from __future__ import annotations

import collections
import re
import subprocess

import pytest
from publish_helpers import stilts

pytestmark = pytest.mark.dachs

OUR_TABLES = ("similarity.", "ivoa.obscore")


def test_dachs_regression_suite_passes(site, published):
    proc = subprocess.run(["dachs", "test", "-v", "similarity/q"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    match = re.search(r"(\d+) of (\d+) bad", out)
    assert match, out
    assert int(match.group(2)) >= 5, out
    assert match.group(1) == "0", out


def _summarise(report: str) -> tuple[collections.Counter, list[str], list[str]]:
    """Count taplint's messages and split its errors into ours and offline artefacts.

    Offline, taplint cannot fetch DaCHS's column-statistics schema (the
    ``g-colstat`` attributes that ``dachs limits`` writes), so every column
    with statistics draws an XSD error that says nothing about the service.
    """
    counts = collections.Counter(line[0] for line in report.splitlines()
                                 if re.match(r"^[EWISF]-", line))
    errors = [line for line in report.splitlines() if line.startswith("E-")]
    offline = [e for e in errors if "g-colstat" in e or "Colstats" in e]
    other = [e for e in errors if e not in offline]
    return counts, offline, other


@pytest.mark.slow
def test_taplint_reports_no_error_from_our_tables(site, published, capsys):
    report = stilts("taplint", f"tapurl={site.tap_url}", "maxrepeat=200", timeout=900)
    counts, offline, other = _summarise(report)
    with capsys.disabled():  # the summary belongs in every test log
        print(f"\ntaplint: {counts['E']} errors, {counts['W']} warnings, {counts['I']} infos; "
              f"{len(offline)} errors are the offline column-statistics schema (g-colstat); "
              f"other errors: {len(other)}")
        for line in other:
            print("  ", line[:300])
    ours = [e for e in other if any(t in e.lower() for t in OUR_TABLES)]
    assert ours == [], "taplint errors caused by our tables:\n" + "\n".join(ours)
    # Nothing else is published on this server, so any other error is ours too.
    assert other == [], "taplint errors:\n" + "\n".join(other)
    # the examples we publish ran and the TAP_SCHEMA has our tables
    assert re.search(r"Tables: \d+", report)
    assert "similarity.neighbours" in report


def test_dachs_validates_our_rd_without_warnings(site, published):
    out = site.run("val", "-v", "similarity/q")
    assert "similarity/q -- OK" in out, out
    lines = [line for line in out.splitlines() if line.strip() and "-- OK" not in line]
    assert lines == [], "dachs val -v similarity/q has something to say:\n" + out
