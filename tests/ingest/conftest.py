"""Shared fixtures of the ingest tests: real sample files and FITS writers."""

from __future__ import annotations

from pathlib import Path

import pytest
from real_components import need

#: Debian package ftools-fv: real FITS examples (NGC 1316 optical and radio
#: images, an HI cube of NGC 6503, table files).
FV_SAMPLES = Path("/usr/share/doc/ftools-fv/examples/sample_data")


@pytest.fixture(scope="session")
def fv_samples() -> Path:
    if not (FV_SAMPLES / "datacube.fit").is_file():
        need("Debian package ftools-fv (apt-get install ftools-fv)")
    return FV_SAMPLES


