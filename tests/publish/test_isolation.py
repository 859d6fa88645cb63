"""The suite's DaCHS is its own, leaves nothing behind, and the guard on the operator's works."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from user_instance import differences, instance_state

from vo_similarity.publish.dachs import DEFAULT_SETTINGS, DachsError, DachsSite
from vo_similarity.publish.scratch import ScratchDachs, processes_using, remove_stale

pytestmark = pytest.mark.dachs


def test_the_suite_publishes_into_its_own_instance(site, dachs_scratch):
    assert os.environ["GAVOSETTINGS"] == str(dachs_scratch.settings)
    assert site.settings == dachs_scratch.settings != DEFAULT_SETTINGS
    assert site.root == dachs_scratch.root and not site.root.is_relative_to("/var/gavo")
    assert site.url == dachs_scratch.url != "http://127.0.0.1:8080"
    assert f"port={dachs_scratch.pg_port}" in site.admin_conninfo()
    assert dachs_scratch.pg_port != 5432
    # every dachs command acts on the same instance
    assert str(dachs_scratch.root) in site.run("config", "rootDir")


def test_a_missing_settings_file_is_refused_not_defaulted(tmp_path):
    with pytest.raises(DachsError, match="no DaCHS settings file"):
        DachsSite.from_config(tmp_path / "gavo.rc")


def test_the_state_digest_sees_one_changed_row(site, published):
    """The digest that proves the operator's DaCHS untouched would see a change."""
    before = instance_state(site)
    with site.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO similarity.selections (model_id, image_id, chosen_id, "
                     "is_similar, created) VALUES (1, 0, 1, true, now())")
        try:
            changed = differences(before, instance_state(site))
        finally:
            conn.execute("DELETE FROM similarity.selections WHERE image_id = 0 AND chosen_id = 1")
    assert [c for c in changed if "similarity.selections" in c], changed
    assert differences(before, instance_state(site)) == []


@pytest.fixture()
def open_tmp():
    """A temporary folder that PostgreSQL's and DaCHS's users can reach."""
    folder = Path(tempfile.mkdtemp(prefix="vo-similarity-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_folder_closed_to_the_servers_is_refused(tmp_path):
    tmp_path.chmod(0o700)
    with pytest.raises(DachsError, match="closed to other users"):
        ScratchDachs.start(parent=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_instance_whose_owner_was_killed_is_removed(open_tmp):
    tmp_path = open_tmp
    script = ("from vo_similarity.publish.scratch import ScratchDachs\n"
              f"s = ScratchDachs.start(parent={str(tmp_path)!r})\n"
              "print(s.base, flush=True)\n"
              "import time; time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
    try:
        base = Path(owner.stdout.readline().strip())
        assert base.is_dir(), "the scratch instance did not start"
        web = int((base / "gavo" / "state" / "web.pid").read_text().split()[0])
        running = processes_using(str(base))
        assert web in running and len(running) >= 2, running  # DaCHS and PostgreSQL
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.communicate(timeout=30)
    assert remove_stale(tmp_path) == [base]
    for _ in range(50):
        if not processes_using(str(base)):
            break
        time.sleep(0.1)
    assert processes_using(str(base)) == []
    assert not base.exists()
