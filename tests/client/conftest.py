"""Fixtures for the client tests.

The published test service itself (the session fixture ``service``: the
built-in sample in a scratch DaCHS of the tests' own) lives in
``tests/services.py``, shared with the web tests. Helpers to run the same ADQL
through STILTS and to count the HTTP requests a client sends are fixtures here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from real_components import need

from vo_similarity.workdir import WorkDir


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
