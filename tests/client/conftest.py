"""Fixtures for the client tests: a DaCHS of their own with the built-in sample.

The session fixture ``service`` starts a scratch DaCHS
(:class:`~vo_similarity.publish.scratch.ScratchDachs`) used by these tests
only -- the publish tests' sample elsewhere must stay as it is --, publishes
the built-in real sample there with the shipped model (ingest, install the
checkpoint, embed, neighbours, publish: about a minute on 2 cores), adds a
second resource ``otherarchive/q`` standing in for another archive (its own
ObsCore-like table, some positions close to published images), and points
``vo_similarity.client.conf.server`` at the instance for the session.

Helpers to run the same ADQL through STILTS and to count the HTTP requests a
client sends are fixtures here too.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
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

OTHER_RD = Path(__file__).with_name("otherarchive") / "q.rd"
#: Every OTHER_STEP-th published image has a counterpart in the other archive,
#: OTHER_OFFSET_DEG away in declination; a second one, twice as far, for every
#: 2*OTHER_STEP-th.  FAR rows lie far from every published image.
OTHER_STEP, OTHER_OFFSET_DEG, OTHER_FAR = 5, 0.002, 7
MODEL = "builtin"
K = 1000  # neighbours per image (N - 1 = 554 with the built-in sample)


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


def build_workdir(root: Path) -> WorkDir:
    """The built-in sample with the shipped model, embedded in float32, with neighbours.

    Float32 on every CPU: the outputs printed in docs/client
    (tests/client/test_docs.py) and the comparisons with the float32 ONNX
    runtime assume float32 embeddings.
    """
    from vo_similarity.publish.sample import builtin_workdir

    try:
        return builtin_workdir(root, model=MODEL, k=K, precision="fp32")
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


def start_service(root: Path) -> Service:
    """Start the scratch DaCHS, publish the built-in sample and the other archive."""
    from vo_similarity.ingest.manifest import read_manifest
    from vo_similarity.publish.publisher import publish

    work = build_workdir(root / "work")
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


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Service:
    """The built-in sample published in a DaCHS of these tests' own; conf.server points there."""
    from vo_similarity.client import conf

    try:
        svc = start_service(tmp_path_factory.mktemp("client"))
        register(svc.scratch)
    except DachsError as exc:
        need(f"the client tests need their own DaCHS instance: {exc}")
    try:
        with conf.set_temp("server", svc.url):
            yield svc
    finally:
        svc.scratch.stop()
    left = processes_using(str(svc.scratch.base))
    assert not left, f"processes of the client tests' DaCHS outlived it: {left}"


@pytest.fixture()
def client(service):
    """A fresh SimilarityClass (no cached models) for the test service."""
    from vo_similarity.client import SimilarityClass

    return SimilarityClass()


class RequestLog:
    """The HTTP requests a client's session sent (a response hook of requests)."""

    def __init__(self, session) -> None:
        self.urls: list[str] = []
        session.hooks["response"].append(lambda r, *a, **k: self.urls.append(r.request.url))

    def __len__(self) -> int:
        return len(self.urls)


@pytest.fixture()
def sent(client) -> RequestLog:
    """Every request ``client`` sends from now on."""
    return RequestLog(client._session)


def stilts_table(tap_url: str, adql: str, uploads: dict[str, Table] | None = None,
                 tmp: Path | None = None) -> Table:
    """Run ``adql`` through STILTS ``tapquery`` (with uploads) and read its VOTable."""
    if shutil.which("stilts") is None:
        need("STILTS is not installed (Debian's stilts)")
    args = ["stilts", "tapquery", f"tapurl={tap_url}", f"adql={adql}", "sync=true",
            "ofmt=votable", "out=-"]
    if uploads:
        args.append(f"nupload={len(uploads)}")
    for i, (name, table) in enumerate((uploads or {}).items(), start=1):
        path = tmp / f"upload-{name}.vot"
        table.write(path, format="votable", overwrite=True)
        args += [f"upload{i}={path}", f"ufmt{i}=votable", f"upname{i}={name}"]
    proc = subprocess.run(args, capture_output=True, check=False, stdin=subprocess.DEVNULL,
                          timeout=300)
    assert proc.returncode == 0, f"stilts tapquery failed:\n{proc.stderr.decode()}"
    import io

    return Table.read(io.BytesIO(proc.stdout), format="votable")


@pytest.fixture()
def stilts(service, tmp_path):
    """``stilts(adql, uploads=None, tap_url=service's) -> Table`` through STILTS."""
    def run(adql: str, uploads: dict[str, Table] | None = None,
            tap_url: str | None = None) -> Table:
        return stilts_table(tap_url or service.tap_url, adql, uploads, tmp_path)
    return run


def assert_same_rows(a: Table, b: Table, columns: list[str] | None = None) -> None:
    """Assert ``a`` and ``b`` hold the same rows in the same order (common columns)."""
    columns = columns or [c for c in a.colnames if c in b.colnames]
    assert columns, "no common column"
    assert len(a) == len(b), f"{len(a)} rows against {len(b)}"
    for name in columns:
        x, y = a[name], b[name]
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            np.testing.assert_array_equal(np.ma.filled(x, np.nan).astype(float),
                                          np.ma.filled(y, np.nan).astype(float), err_msg=name)
        else:
            assert [str(v) for v in x] == [str(v) for v in y], name


@pytest.fixture()
def same_rows():
    """``same_rows(a, b, columns=None)``: assert two tables hold the same rows in order."""
    return assert_same_rows


#: input side of :func:`onnx_model`
ONNX_SIDE = 64


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """The shipped model exported to ONNX for ONNX_SIDE² input, alone in its folder."""
    from vo_similarity.embed.onnx_export import export_onnx
    from vo_similarity.resources import shipped_model_files

    root = tmp_path_factory.mktemp("model")
    model = WorkDir(root / "work").model("builtin").ensure()
    weights, config = shipped_model_files()
    shutil.copy(weights, model.weights)
    shutil.copy(config, model.config)
    return export_onnx(model, root / "served" / "builtin.onnx", input_size=ONNX_SIDE)
