"""The light embedding runtime: ingest's reading and preprocessing, download, cache, digest."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from astroquery.exceptions import InvalidQueryError, RemoteServiceError

from vo_similarity.client.embedding import ModelRuntime, image_pixels, preprocess_config
from vo_similarity.ingest.manifest import read_manifest, read_manifest_meta
from vo_similarity.ingest.pipeline import ingest
from vo_similarity.ingest.stellarium import builtin_sample
from vo_similarity.ingest.synthetic import write_sky
from vo_similarity.workdir import WorkDir

#: the pixel store side of these tests (the shipped model warps any side to its 64)
SIDE = 64  # the input side of onnx_model (tests/client/conftest.py, ONNX_SIDE)
PREPROCESS = {"size": SIDE, "clip": [0.5, 99.9], "stretch": "asinh", "softening": 0.1,
              "preview_size": 256}


@pytest.fixture(scope="module")
def sample_work(tmp_path_factory) -> tuple[WorkDir, list]:
    """Six files of the built-in sample (PNG, JPEG) and six synthetic FITS files (2-D,
    4-D, cubes), ingested as `vo-similarity ingest` does."""
    inputs = builtin_sample()[:6] + write_sky(tmp_path_factory.mktemp("fits"), 6, size=48,
                                              cube_fraction=0.5, n_channels=4)
    work = WorkDir(tmp_path_factory.mktemp("work"))
    ingest(inputs, work, preprocess_config(PREPROCESS), progress=False)
    return work, inputs


class _Server:
    """A real HTTP server on 127.0.0.1 serving ``root``, counting the requests."""

    def __init__(self, root: Path):
        counter = self
        self.requests = 0

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                counter.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture()
def server(onnx_model):
    served = _Server(onnx_model.parent)
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def test_image_pixels_equal_the_pixel_store_entries(sample_work):
    """The same reader and preprocess as ingest: the stored pixels, bit for bit."""
    work, inputs = sample_work
    store = np.load(work.pixels)
    manifest = read_manifest(work.manifest)
    published = json.loads(json.dumps(read_manifest_meta(work.manifest)["preprocess"]))
    assert published == {**PREPROCESS, "channels": None}
    by_obs_id = {inp.obs_id: inp for inp in inputs}
    assert len(manifest) == len(inputs)
    assert {p.suffix for p in (inp.path for inp in inputs)} >= {".png", ".fits"}
    for row in manifest:
        pixels = image_pixels(by_obs_id[row["obs_id"]].path, published)
        assert pixels.dtype == np.float32 and pixels.shape == (SIDE, SIDE)
        assert np.array_equal(pixels, store[row["image_id"], 0].astype(np.float32))
    # the check can fail: another preprocess gives other pixels
    other = image_pixels(inputs[0].path, {**published, "softening": 0.3})
    first = manifest["obs_id"].tolist().index(inputs[0].obs_id)
    assert not np.array_equal(other, store[first, 0].astype(np.float32))


def test_a_cube_channel_range_travels_with_the_preprocess_metadata(tmp_path):
    """Cubes ingested with a channel range: the client reads the same channels."""
    cubes = write_sky(tmp_path / "fits", 3, size=48, cube_fraction=1.0, n_channels=6)
    work = WorkDir(tmp_path / "work")
    ingest(cubes, work, preprocess_config(PREPROCESS), progress=False, channels=(0, 2))
    published = read_manifest_meta(work.manifest)["preprocess"]
    assert published["channels"] == [0, 2]
    store = np.load(work.pixels)
    by_obs_id = {inp.obs_id: inp for inp in cubes}
    for row in read_manifest(work.manifest):
        path = by_obs_id[row["obs_id"]].path
        stored = store[row["image_id"], 0].astype(np.float32)
        assert np.array_equal(image_pixels(path, published), stored)
        # without the range, the peak over all channels differs
        assert not np.array_equal(image_pixels(path, {**published, "channels": None}), stored)


def test_an_rgb_array_reads_as_its_png_file(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    assert np.array_equal(image_pixels(rgb, PREPROCESS), image_pixels(tmp_path / "x.png",
                                                                    PREPROCESS))
    rgba = np.concatenate([rgb, np.full((40, 30, 1), 255, np.uint8)], axis=2)
    rgba[:5, :, 3] = 0  # transparent rows are masked, as the reader masks them
    Image.fromarray(rgba).save(tmp_path / "y.png")
    assert np.array_equal(image_pixels(rgba, PREPROCESS), image_pixels(tmp_path / "y.png",
                                                                     PREPROCESS))
    assert not np.array_equal(image_pixels(rgba, PREPROCESS), image_pixels(rgb, PREPROCESS))


def test_embed_a_file_an_array_and_pixels_alike(onnx_model, sample_work):
    _, inputs = sample_work
    runtime = ModelRuntime.from_file(onnx_model, PREPROCESS, threads=1)
    assert (runtime.dim, runtime.input_size) == (256, SIDE)
    assert runtime.metadata["vo_similarity.model"] == "builtin"
    vector = runtime.embed(inputs[0].path)
    assert vector.dtype == np.float32 and vector.shape == (256,)
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert np.array_equal(runtime.embed_pixels(image_pixels(inputs[0].path, PREPROCESS)), vector)
    from PIL import Image

    with Image.open(inputs[0].path) as im:
        array = np.asarray(im.convert("L"))
    assert np.array_equal(runtime.embed(array), vector)
    assert float(runtime.embed(inputs[1].path) @ vector) < 0.999


@pytest.mark.parametrize("bad, message", [
    (np.full((32, 32), np.nan), "all pixels are NaN"),
    (np.ones((32, 32)), "constant image"),
    (np.zeros((2, 40)), "too small"),
    (np.zeros(40), "must be 2-D"),
    (np.zeros((8, 8, 2)), "must be 2-D"),
    (np.array([["a"] * 8] * 8), "numeric"),
    ("missing.fits", "no such file"),
    (b"bytes", "file path or a numpy array"),
])
def test_bad_images_are_refused_clearly(onnx_model, bad, message):
    runtime = ModelRuntime.from_file(onnx_model, PREPROCESS, threads=1)
    with pytest.raises(InvalidQueryError, match=message):
        runtime.embed(bad)


def test_not_an_image_file_is_refused(tmp_path):
    (tmp_path / "notes.fits").write_text("SIMPLY not FITS\n")
    with pytest.raises(InvalidQueryError, match="not an image"):
        image_pixels(tmp_path / "notes.fits", PREPROCESS)


def test_bad_models_and_metadata_are_refused(onnx_model, tmp_path):
    with pytest.raises(InvalidQueryError, match="different models"):
        ModelRuntime.from_file(onnx_model, {**PREPROCESS, "size": 128})
    with pytest.raises(InvalidQueryError, match="no such model file"):
        ModelRuntime.from_file(tmp_path / "none.onnx", PREPROCESS)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidQueryError, match="not a usable ONNX model"):
        ModelRuntime.from_file(tmp_path / "junk.onnx", PREPROCESS)
    with pytest.raises(InvalidQueryError, match="stretch"):
        preprocess_config({**PREPROCESS, "stretch": "sqrt"})
    with pytest.raises(InvalidQueryError, match="not JSON"):
        preprocess_config("{size: 64")
    assert preprocess_config(json.dumps(PREPROCESS)).clip == (0.5, 99.9)


def test_fetch_downloads_once_and_checks_the_digest(onnx_model, server, tmp_path):
    digest = hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    runtime = ModelRuntime.fetch(server.url(onnx_model.name), digest, json.dumps(PREPROCESS),
                                 cache_dir=cache, threads=1)
    assert runtime.path == cache / f"{digest}.onnx" and server.requests == 1
    assert list(cache.iterdir()) == [runtime.path]
    again = ModelRuntime.fetch(server.url(onnx_model.name), digest.upper(), PREPROCESS,
                               cache_dir=cache, threads=1)
    assert again.path == runtime.path and server.requests == 1  # from the cache
    # a damaged cache entry is noticed and downloaded again
    runtime.path.write_bytes(b"damaged")
    ModelRuntime.fetch(server.url(onnx_model.name), digest, PREPROCESS, cache_dir=cache)
    assert server.requests == 2 and hashlib.sha256(runtime.path.read_bytes()).hexdigest() == digest


def test_fetch_refuses_a_wrong_digest_and_failed_downloads(onnx_model, server, tmp_path):
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(RemoteServiceError, match="refusing it"):
        ModelRuntime.fetch(server.url(onnx_model.name), wrong, PREPROCESS, cache_dir=cache)
    assert list(cache.iterdir()) == []  # nothing half-written or unverified is kept
    with pytest.raises(RemoteServiceError, match="404"):
        ModelRuntime.fetch(server.url("gone.onnx"), wrong, PREPROCESS, cache_dir=cache)
    with pytest.raises(RemoteServiceError, match="cannot download"):
        ModelRuntime.fetch("http://127.0.0.1:9/model.onnx", wrong, PREPROCESS, cache_dir=cache,
                           timeout=5)
    with pytest.raises(InvalidQueryError, match="no weights"):
        ModelRuntime.fetch(None, None, PREPROCESS, cache_dir=cache)
    with pytest.raises(InvalidQueryError, match="64 hex digits"):
        ModelRuntime.fetch(server.url(onnx_model.name), "abc", PREPROCESS, cache_dir=cache)
    assert list(cache.iterdir()) == []
