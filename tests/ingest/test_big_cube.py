"""A 2 GB cube is an input like any other: it is ingested, read a block at a time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from vo_similarity.ingest.manifest import read_manifest
from vo_similarity.ingest.pipeline import ingest
from vo_similarity.ingest.readers import read_image
from vo_similarity.workdir import WorkDir

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "ingest_memory.py"


def _cube_writer():
    spec = importlib.util.spec_from_file_location("ingest_memory", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_cube


@pytest.mark.slow
def test_two_gigabyte_cube(tmp_path):
    path = tmp_path / "cubes" / "big.fits"
    path.parent.mkdir()
    side, nchan = 2048, 120
    try:
        nbytes = _cube_writer()(path, side, nchan)
        assert nbytes > 2e9
        raw = read_image(path)
        assert raw.data.shape == (side, side) and raw.facts.peak_channels == (0, nchan - 1)
        # spot checks against spectra read straight from the file
        header_bytes = nbytes - 4 * side * side * nchan - (-(4 * side * side * nchan) % 2880)
        cube = np.memmap(path, dtype=">f4", mode="r", offset=header_bytes,
                         shape=(nchan, side, side))
        rng = np.random.default_rng(0)
        for y, x in zip(rng.integers(0, side, 20), rng.integers(0, side, 20)):
            spectrum = np.asarray(cube[:, y, x])
            expected = np.nan if np.isnan(spectrum).all() else np.nanmax(spectrum)
            np.testing.assert_equal(raw.data[side - 1 - y, x], expected)
        del cube
        work = WorkDir(tmp_path / "work")
        result = ingest([*_inputs(path)], work, progress=False)
        assert result.n_images == 1 and not result.rejected
        assert read_manifest(work.manifest)["target_name"][0] == "BENCH"
    finally:
        path.unlink(missing_ok=True)


def _inputs(path: Path):
    from vo_similarity.ingest.inputs import ImageInput

    yield ImageInput(path=path, obs_id="big")
