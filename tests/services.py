"""The published test service shared by the client and the web tests.

The session fixture ``service`` starts a scratch DaCHS
(:class:`~vo_similarity.publish.scratch.ScratchDachs`) of its own -- the
publish tests' sample elsewhere must stay as it is --, publishes the built-in
real sample there with the shipped model (ingest, install the checkpoint,
embed, neighbours, publish -- which also installs the web page: about a minute
on 2 cores), adds a second resource ``otherarchive/q`` standing in for another
archive (its own ObsCore-like table, some positions close to published
images), and points ``vo_similarity.client.conf.server`` at the instance for
the session.

One instance serves both ``tests/client`` and ``tests/web`` (publishing twice
would double the slowest step of the suite); ``tests/conftest.py`` makes the
fixture visible to every test folder.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from real_components import need
from scratch_instances import register

from vo_similarity.publish.dachs import DachsError, DachsSite
from vo_similarity.publish.scratch import ScratchDachs, processes_using
from vo_similarity.workdir import WorkDir

OTHER_RD = Path(__file__).parent / "client" / "otherarchive" / "q.rd"
#: Every OTHER_STEP-th published image has a counterpart in the other archive,
#: OTHER_OFFSET_DEG away in declination; a second one, twice as far, for every
#: 2*OTHER_STEP-th.  FAR rows lie far from every published image.
OTHER_STEP, OTHER_OFFSET_DEG, OTHER_FAR = 5, 0.002, 7
MODEL = "builtin"
K = 1000  # neighbours per image (N - 1 = 554 with the built-in sample alone)
#: images of the synthetic sky the web page's service publishes after the built-in
#: sample's 555, so that N - 1 > K and the page reaches rank 1000; the client's
#: service has none (its docs print the sample's own figures and neighbours)
WEB_SYNTHETIC = 460
#: a second model of the web page's service (the page's model menu): the same
#: embeddings with WEB_SECOND_K neighbours each, so that switching shows
WEB_SECOND_MODEL, WEB_SECOND_K = "builtin-k100", 100


@dataclass
class Service:
    """The published test service."""

    scratch: ScratchDachs
    site: DachsSite
    work: WorkDir
    manifest: Table
    other: Table  # the other archive's rows (obs_publisher_did, obs_id, target_name, s_ra, s_dec)

    @property
    def url(self) -> str:
        return self.scratch.url

    @property
    def tap_url(self) -> str:
        return f"{self.scratch.url}/tap"


def build_workdir(root: Path, synthetic: int = 0) -> WorkDir:
    """The built-in sample with the shipped model, embedded in float32, with neighbours.

    Float32 on every CPU: the outputs printed in docs/client
    (tests/client/test_docs.py) and the comparisons with the float32 ONNX
    runtime assume float32 embeddings.
    """
    from vo_similarity.publish.sample import builtin_workdir

    try:
        return builtin_workdir(root, model=MODEL, k=K, precision="fp32", synthetic=synthetic)
    except FileNotFoundError as exc:
        need(f"the built-in sample (Debian's stellarium-data) is missing: {exc}")


def write_other_archive(site: DachsSite, manifest: Table) -> Table:
    """Install ``otherarchive/q`` with positions derived from ``manifest``; import it."""
    resdir = site.inputs / "otherarchive"
    (resdir / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OTHER_RD, resdir / "q.rd")
    rows = []
    for i, row in enumerate(manifest):
        if i % OTHER_STEP:
            continue
        for j in range(1 if i % (2 * OTHER_STEP) else 2):
            rows.append((f"ivo://other.example/obs?{i}-{j}", f"other-{i}-{j}",
                         row["target_name"] or "", row["s_ra"],
                         np.clip(row["s_dec"] + (j + 1) * OTHER_OFFSET_DEG, -90, 90)))
    for j in range(OTHER_FAR):  # near the south celestial pole: no sample image is there
        rows.append((f"ivo://other.example/obs?far-{j}", f"far-{j}", "", 51.4 * j, -89.9))
    with open(resdir / "data" / "obs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["obs_publisher_did", "obs_id", "obs_collection", "dataproduct_type",
                         "target_name", "s_ra", "s_dec", "s_fov", "access_url",
                         "access_format"])
        for did, obs_id, target, ra, dec in rows:
            writer.writerow([did, obs_id, "other", "image", target, repr(float(ra)),
                             repr(float(dec)), "0.1", f"http://other.example/{obs_id}.fits",
                             "image/fits"])
    for path in (resdir, resdir / "data"):
        path.chmod(0o755)
    site.run("imp", "otherarchive/q")
    return Table(rows=rows, names=("obs_publisher_did", "obs_id", "target_name", "s_ra",
                                   "s_dec"))


def add_second_model(work: WorkDir, name: str, k: int) -> None:
    """Model ``name``: MODEL's embeddings (no weights) with ``k`` neighbours each."""
    from vo_similarity.neighbours.store import compute_model_neighbours

    first, second = work.model(MODEL), work.model(name).ensure()
    for path in (first.config, first.embeddings, first.embedding_ids, first.embedding_source):
        shutil.copy(path, second.root / path.name)
    compute_model_neighbours(second, k, progress=False)


def start_service(root: Path, synthetic: int = 0, second_model: tuple[str, int] | None = None
                  ) -> Service:
    """Start the scratch DaCHS, publish the built-in sample (and ``synthetic``
    images of the synthetic sky, and a ``second_model`` (name, k)) and the other
    archive."""
    from vo_similarity.ingest.manifest import read_manifest
    from vo_similarity.publish.publisher import publish

    work = build_workdir(root / "work", synthetic)
    if second_model:
        add_second_model(work, *second_model)
    scratch = ScratchDachs.start()
    try:
        site = scratch.site()
        publish(work, site, progress=False)
        manifest = read_manifest(work.manifest)
        other = write_other_archive(site, manifest)
        site.run("serv", "reload")
    except BaseException:
        scratch.stop()
        raise
    return Service(scratch, site, work, manifest, other)


def _serve(root: Path, synthetic: int = 0, second_model: tuple[str, int] | None = None,
           *, client_default: bool = False) -> Iterator[Service]:
    """Start, yield and stop a service; ``client_default``: point the client's
    ``conf.server`` there meanwhile (one service only: session fixtures live to the
    end of the run, so a second one would redirect every client test after it)."""
    from vo_similarity.client import conf

    try:
        svc = start_service(root, synthetic, second_model)
        register(svc.scratch)
    except DachsError as exc:
        need(f"the client and web tests need their own DaCHS instance: {exc}")
    try:
        with conf.set_temp("server", svc.url) if client_default else nullcontext():
            yield svc
    finally:
        svc.scratch.stop()
    left = processes_using(str(svc.scratch.base))
    assert not left, f"processes of the service's DaCHS outlived it: {left}"


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[Service]:
    """The built-in sample published in a DaCHS of the tests' own; conf.server points there."""
    yield from _serve(tmp_path_factory.mktemp("service"), client_default=True)


@pytest.fixture(scope="session")
def web_service(tmp_path_factory) -> Iterator[Service]:
    """The built-in sample and WEB_SYNTHETIC synthetic images (k = 1000 neighbours
    each; a second model with WEB_SECOND_K), published in another DaCHS of the
    tests' own, for the web page; conf.server stays on ``service``."""
    yield from _serve(tmp_path_factory.mktemp("web-service"), WEB_SYNTHETIC,
                      (WEB_SECOND_MODEL, WEB_SECOND_K))
