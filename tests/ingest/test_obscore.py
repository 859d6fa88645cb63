"""Ingest from an ObsCore TAP service (vo_similarity.ingest.obscore).

Against the real DaCHS of the test service (its own ObsCore serves the
built-in sample's files) and, for the failures a real archive has, a real
HTTP server on loopback (127.0.12.x) that answers 404, 500, slowly, or with a
DataLink document.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from PIL import Image

from vo_similarity.cli import main
from vo_similarity.ingest import stellarium
from vo_similarity.ingest.manifest import read_manifest
from vo_similarity.ingest.obscore import download_inputs
from vo_similarity.ingest.pipeline import ingest
from vo_similarity.ingest.preprocess import PreprocessConfig
from vo_similarity.workdir import WorkDir

ADQL = ("SELECT TOP 24 obs_publisher_did, obs_id, access_url, access_format, target_name, "
        "s_ra, s_dec, s_fov FROM ivoa.obscore "
        "WHERE obs_publisher_did LIKE 'ivo://vo-similarity.example/%' ORDER BY obs_id")


def test_ingest_from_the_local_obscore_equals_ingest_from_the_files(service, tmp_path):
    via_tap, via_files = WorkDir(tmp_path / "tap"), WorkDir(tmp_path / "files")
    assert main(["ingest", str(via_tap.root), "--tap", service.tap_url, "--adql", ADQL,
                 "--size", "32", "--no-progress"]) == 0
    tap = read_manifest(via_tap.manifest)
    assert len(tap) == 24 and len(list(via_tap.downloads.iterdir())) == 24
    by_id = {inp.obs_id: inp for inp in stellarium.builtin_sample()}
    ingest([by_id[str(o)] for o in tap["obs_id"]], via_files, PreprocessConfig(size=32),
           progress=False)
    files = read_manifest(via_files.manifest)
    assert list(tap["obs_publisher_did"]) == list(files["obs_publisher_did"])
    assert list(tap["obs_id"]) == list(files["obs_id"])
    assert list(tap["target_name"]) == list(files["target_name"])
    np.testing.assert_allclose(tap["s_ra"], files["s_ra"], rtol=1e-12)
    assert tap.meta["pixels_sha256"] == files.meta["pixels_sha256"]
    np.testing.assert_array_equal(np.load(via_tap.pixels), np.load(via_files.pixels))
    # a rerun downloads nothing and changes nothing
    stamps = {p.name: p.stat().st_mtime_ns for p in via_tap.downloads.iterdir()}
    assert main(["ingest", str(via_tap.root), "--tap", service.tap_url, "--adql", ADQL,
                 "--size", "32", "--no-progress"]) == 0
    assert stamps == {p.name: p.stat().st_mtime_ns for p in via_tap.downloads.iterdir()}
    assert read_manifest(via_tap.manifest).meta["pixels_sha256"] == tap.meta["pixels_sha256"]


def test_a_query_without_the_needed_columns_is_a_clear_error(service, tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "w"), "--tap", service.tap_url, "--adql",
                 "SELECT TOP 3 obs_id FROM ivoa.obscore", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "must select obs_publisher_did, access_url" in err
    assert main(["ingest", str(tmp_path / "w"), "--tap", service.tap_url,
                 "--no-progress"]) == 2


# -- a real HTTP server with the failures of a real archive ---------------------------

def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 24), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


DATALINK = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE type="results">
  <TABLE>
   <FIELD name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.main"/>
   <FIELD name="access_url" datatype="char" arraysize="*" ucd="meta.ref.url"/>
   <FIELD name="service_def" datatype="char" arraysize="*" ucd="meta.ref"/>
   <FIELD name="error_message" datatype="char" arraysize="*" ucd="meta.code.error"/>
   <FIELD name="semantics" datatype="char" arraysize="*" ucd="meta.code"/>
   <FIELD name="description" datatype="char" arraysize="*" ucd="meta.note"/>
   <FIELD name="content_type" datatype="char" arraysize="*" ucd="meta.code.mime"/>
   <FIELD name="content_length" datatype="long" ucd="phys.size;meta.file" unit="byte"/>
   <DATA><TABLEDATA>
    <TR><TD>ivo://x.example/~?dl</TD><TD>{base}/preview/dl.png</TD><TD/><TD/>
        <TD>#preview</TD><TD>a preview</TD><TD>image/png</TD><TD>10</TD></TR>
    <TR><TD>ivo://x.example/~?dl</TD><TD>{base}/file/dl.png</TD><TD/><TD/>
        <TD>#this</TD><TD>the image</TD><TD>image/png</TD><TD>10</TD></TR>
   </TABLEDATA></DATA>
  </TABLE>
 </RESOURCE>
</VOTABLE>
"""


class Archive:
    """``/file/<name>.png`` a PNG, ``/slow/<name>.png`` the same in slow pieces,
    ``/missing/...`` 404, ``/error/...`` 500, ``/links/dl`` a DataLink document."""

    def __init__(self, host: str):
        self.hits: Counter[str] = Counter()
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                archive.hits[self.path] += 1
                kind, _, name = self.path.strip("/").partition("/")
                if kind in ("file", "slow", "preview"):
                    body = _png(sum(map(ord, name)))
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    pieces = [body[i:i + 64] for i in range(0, len(body), 64)]
                    for piece in pieces:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        if kind == "slow":
                            time.sleep(3.0 / len(pieces))
                elif kind == "links":
                    body = DATALINK.format(base=archive.url).encode()
                    self.send_response(200)
                    self.send_header("Content-Type",
                                     "application/x-votable+xml;content=datalink")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404 if kind == "missing" else 500)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def archive():
    server = Archive("127.0.12.1")
    yield server
    server.close()


def _rows(archive: Archive, paths: list[str], formats: list[str] | None = None) -> Table:
    n = len(paths)
    return Table({
        "obs_publisher_did": [f"ivo://x.example/~?obs-{i}" for i in range(n)],
        "obs_id": [f"obs-{i}" for i in range(n)],
        "access_url": [archive.url + p for p in paths],
        "access_format": formats or ["image/png"] * n,
        "target_name": [f"target {i}" for i in range(n)],
        "s_ra": np.linspace(10, 20, n), "s_dec": np.linspace(-5, 5, n),
        "s_fov": np.full(n, 0.1)})


def test_a_dead_url_and_a_server_error_cost_one_report_line_each(archive, tmp_path):
    work = WorkDir(tmp_path / "w")
    table = _rows(archive, ["/file/a.png", "/missing/b.png", "/error/c.png",
                            "/links/dl"],
                  ["image/png", "image/png", "image/png",
                   "application/x-votable+xml;content=datalink"])
    inputs, failed = download_inputs(table, work.downloads, workers=2, retries=2, backoff=0.05,
                                     progress=False)
    assert [i.obs_id for i in inputs] == ["obs-0", "obs-3"]  # the table's order
    assert [i.publisher_did for i in inputs] == ["ivo://x.example/~?obs-0",
                                                 "ivo://x.example/~?obs-3"]
    assert archive.hits["/file/dl.png"] == 1 and archive.hits["/preview/dl.png"] == 0
    reasons = dict(failed)
    assert "HTTP 404" in reasons["ivo://x.example/~?obs-1"]
    assert archive.hits["/missing/b.png"] == 1  # a 404 is not retried
    assert "HTTP 500" in reasons["ivo://x.example/~?obs-2"]
    assert "after 3 tries" in reasons["ivo://x.example/~?obs-2"]
    assert archive.hits["/error/c.png"] == 3
    result = ingest(inputs, work, PreprocessConfig(size=16), progress=False, rejected=failed)
    assert result.n_images == 2
    manifest = read_manifest(work.manifest)
    assert list(manifest["obs_publisher_did"]) == ["ivo://x.example/~?obs-0",
                                                   "ivo://x.example/~?obs-3"]
    assert list(manifest["target_name"]) == ["target 0", "target 3"]
    report = work.ingest_report.read_text().splitlines()
    assert len(report) == 2 and all("download failed" in line for line in report)
    assert not list(work.downloads.glob("*.part"))


KILLED_RUN = """
import sys
from astropy.table import Table
from pathlib import Path
from vo_similarity.ingest.obscore import download_inputs
download_inputs(Table.read(sys.argv[1]), Path(sys.argv[2]), workers=1, progress=False)
"""


def test_a_download_killed_midway_resumes(archive, tmp_path):
    table = _rows(archive, ["/slow/a.png", "/slow/b.png", "/slow/c.png"])
    table.write(tmp_path / "rows.ecsv")
    cache = tmp_path / "downloads"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "rows.ecsv"),
                             str(cache)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the first file is in, the second on its way
            done = [p for p in cache.glob("*.png")] if cache.is_dir() else []
            if done and archive.hits["/slow/b.png"]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first download never finished")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert len(list(cache.glob("*.png"))) == 1
    inputs, failed = download_inputs(table, cache, workers=1, progress=False)
    assert not failed and [i.obs_id for i in inputs] == ["obs-0", "obs-1", "obs-2"]
    assert archive.hits["/slow/a.png"] == 1  # kept from the killed run
    assert archive.hits["/slow/c.png"] == 1
    for inp, name in zip(inputs, "abc", strict=True):
        assert Path(inp.path).read_bytes() == _png(sum(map(ord, f"{name}.png")))
    assert not list(cache.glob("*.part"))
