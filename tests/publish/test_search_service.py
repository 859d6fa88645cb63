"""The search service of similarity/q against numpy, over HTTP on the suite's DaCHS.

Reference: numpy in float64 on the work directory's embeddings, with the
contract's formula for the query.  The service's scores are float32 products
of float32 vectors renormalised in float32, so they differ from the reference
by at most a derived rounding bound (:func:`score_tolerance`); ids must agree
except where two reference scores are closer than that bound.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from publish_helpers import model_id

pytestmark = pytest.mark.dachs

U32 = 2.0**-24  # unit roundoff of float32


def score_tolerance(dim: int) -> float:
    """Largest |service score − exact score| for unit vectors of dimension ``dim``.

    * The float32 inner product of x' and q' is within γ_D·‖x'‖‖q'‖ of the
      exact one, whatever the order of the sum (Higham 2002, "Accuracy and
      Stability of Numerical Algorithms", §3.1; γₙ = n·u/(1 − n·u), u = 2⁻²⁴).
    * x' = fl(x / fl(‖x‖)): the float32 norm is within γ_D of ‖x‖ (relative),
      the division rounds once, so ‖x' − x̂‖ ≤ γ_D + 2u; the embeddings of the
      chosen images enter q through the same x', so ‖q' − q‖ ≤ γ_D + 3u
      (its cast to float32 adds u).
    * |x'·q' − x̂·q| ≤ ‖x' − x̂‖‖q'‖ + ‖x̂‖‖q' − q‖, and ‖x'‖, ‖q'‖ ≤ 1 + γ_D + 3u.
    """
    gamma = dim * U32 / (1 - dim * U32)
    grow = 1 + gamma + 3 * U32
    return gamma * grow * grow + (gamma + 2 * U32) * grow + (gamma + 3 * U32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Reference:
    """A model's embeddings from the work directory, and the manifest's names."""

    def __init__(self, work, name: str):
        from astropy.table import Table

        model = work.model(name)
        self.ids = np.load(model.embedding_ids).astype(np.int64)
        self.vectors = _unit(np.load(model.embeddings))
        manifest = Table.read(work.manifest, format="ascii.ecsv")
        self.did = {int(i): str(d) for i, d in zip(manifest["image_id"],
                                                   manifest["obs_publisher_did"])}
        self.obs_id = {int(i): str(o) for i, o in zip(manifest["image_id"], manifest["obs_id"])}
        self.dim = self.vectors.shape[1]

    def row(self, image_id: int) -> int:
        return int(np.flatnonzero(self.ids == image_id)[0])

    def query(self, vectors=(), weights=None, similar=(), not_similar=(), beta=0.5):
        weights = [1.0] * len(vectors) if weights is None else weights
        total = sum(w * _unit(v) for v, w in zip(vectors, weights))
        total = total + sum(self.vectors[self.row(i)] for i in similar)
        q = total / (sum(weights) + len(similar))
        if not_similar:
            q = q - beta * np.mean([self.vectors[self.row(i)] for i in not_similar], axis=0)
        return _unit(q)

    def scores(self, q):
        return dict(zip(self.ids.tolist(), (self.vectors @ q).tolist()))

    def check(self, reply: dict, q, n: int, exclude=()) -> None:
        """``reply`` is the exact top n of ``q`` (ids; scores within the bound)."""
        scores = self.scores(q)
        for i in exclude:
            scores.pop(i)
        expected = sorted(scores, key=lambda i: (-scores[i], i))[:n]
        got = [r["image_id"] for r in reply["results"]]
        tol = score_tolerance(self.dim)
        assert [r["rank"] for r in reply["results"]] == list(range(1, len(expected) + 1))
        assert not set(got) & set(exclude)
        for rank, (g, e) in enumerate(zip(got, expected, strict=True), 1):
            assert g == e or abs(scores[g] - scores[e]) <= 2 * tol, (rank, g, e)
        for r in reply["results"]:
            assert abs(r["score"] - scores[r["image_id"]]) <= tol
            assert r["dist"] == pytest.approx(np.sqrt(max(0.0, 2 - 2 * r["score"])), abs=1e-12)
            assert r["obs_publisher_did"] == self.did[r["image_id"]]
            assert r["obs_id"] == self.obs_id[r["image_id"]]


def search(site, **params) -> dict:
    import requests

    r = requests.post(f"{site.url}/similarity/q/search/api", data=params, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json"), r.text[:300]
    return r.json()


@pytest.mark.parametrize("name", ["sample", "galactic"])
def test_vector_query_is_the_exact_top_n(site, published, name):
    ref = Reference(published.work, name)
    rng = np.random.default_rng(3)
    for n in (1, 7, 20, ref.vectors.shape[0]):
        v = rng.normal(size=ref.dim) * 3  # need not be unit length
        reply = search(site, model=model_id(site, name), n=n,
                       vector=",".join(repr(float(x)) for x in v))
        assert reply["model_id"] == model_id(site, name) and reply["dim"] == ref.dim
        assert reply["n"] == len(reply["results"]) == n
        ref.check(reply, ref.query([v]), n)


def test_weighted_vectors_and_rocchio(site, published):
    ref = Reference(published.work, "galactic")
    rng = np.random.default_rng(4)
    v1, v2 = rng.normal(size=ref.dim), rng.normal(size=ref.dim)
    similar = [int(ref.ids[3]), int(ref.ids[11])]
    rejected = [int(ref.ids[5])]
    reply = search(site, model=model_id(site, "galactic"), n=30,
                   vector=[",".join(map(str, v1)), ",".join(map(str, v2))], weight=["2", "0.5"],
                   similar=[ref.did[similar[0]], ref.obs_id[similar[1]]],  # DID or obs_id
                   not_similar=[ref.did[rejected[0]]], beta="0.25")
    q = ref.query([v1, v2], [2.0, 0.5], similar, rejected, beta=0.25)
    ref.check(reply, q, 30, exclude=similar + rejected)


def test_similar_images_alone_leave_themselves_out(site, published):
    ref = Reference(published.work, "sample")
    chosen = int(ref.ids[0])
    reply = search(site, model=model_id(site, "sample"), similar=ref.obs_id[chosen])
    assert reply["n"] == 20  # the default
    ref.check(reply, ref.query(similar=[chosen]), 20, exclude=[chosen])
    # with one image, the ranking is the image's own neighbours of the index files
    nb = np.load(published.work.model("sample").neighbour_ids)[ref.row(chosen)]
    assert [r["image_id"] for r in reply["results"]] == [int(i) for i in nb[:20]]


def _vector(values) -> str:
    return ",".join(str(v) for v in values)


BAD = [
    ({"similar": "sample-999999"}, "unknown image 'sample-999999'"),
    ({"similar": "x' OR '1'='1"}, "unknown image \"x' OR '1'='1\""),
    ({"similar": "<script>alert(1)</script>"}, "unknown image '<script>"),
    ({"not_similar": "sample-000001"}, "nothing to search with"),
    ({}, "nothing to search with"),
    ({"n": "0", "similar": "sample-000001"}, "n must be an integer from 1 to 1000, got 0"),
    ({"n": "1001", "similar": "sample-000001"}, "n must be an integer from 1 to 1000, got 1001"),
    ({"n": "-3", "similar": "sample-000001"}, "n must be an integer from 1 to 1000"),
    ({"n": "ten", "similar": "sample-000001"}, "n must be an integer from 1 to 1000, got 'ten'"),
    ({"vector": "1,2,3"}, "vector 1 has 3 values; model"),
    ({"vector": _vector([1] * 15 + ["nan"])}, "value 16 of vector 1 must be a finite number"),
    ({"vector": _vector([1] * 15 + ["inf"])}, "must be a finite number"),
    ({"vector": _vector([1] * 15 + ["x"])}, "value 16 of vector 1 must be a number, got 'x'"),
    ({"vector": _vector([0] * 16)}, "vector 1 is zero"),
    ({"vector": _vector([1] * 16), "weight": ["1", "2"]}, "one weight per vector"),
    ({"vector": _vector([1] * 16), "weight": "-1"}, "every weight must be positive"),
    ({"similar": "sample-000001", "beta": "2"}, "beta must be from 0 to 1, got 2.0"),
    ({"similar": "sample-000001", "beta": "nan"}, "beta must be a finite number"),
    ({"similar": "sample-000001", "not_similar": "sample-000001", "beta": "1"},
     "the query is (nearly) the zero vector"),
    ({"similar": [f"sample-{i:06d}" for i in range(1001)]}, "at most 1000 images"),
    ({"vector": [_vector([1] * 16)] * 65}, "at most 64 vectors"),
]


@pytest.mark.parametrize(("params", "message"), BAD,
                         ids=[m.split(",")[0][:40] for _, m in BAD])
def test_bad_input_is_a_clear_json_error(site, published, params, message):
    reply = search(site, model=model_id(site, "sample"), **params)
    assert list(reply) == ["error"] and message in reply["error"], reply


@pytest.mark.parametrize(("model", "message"), [
    (None, "model is required"),
    ("99", "unknown model 99; published models: "),
    ("1; DROP TABLE similarity.models", "model must be an integer"),
    ("0", "model must be an integer from 1 to 32767, got 0"),
])
def test_bad_model_is_a_clear_json_error(site, published, model, message):
    params = {"similar": "sample-000001"} | ({} if model is None else {"model": model})
    reply = search(site, **params)
    assert message in reply["error"], reply


def test_a_model_without_embeddings_is_a_clear_error(site, published):
    mid = model_id(site, "galactic")
    with site.connect(autocommit=True) as conn:
        row = conn.execute("SELECT model_id, file, n_vectors, dim FROM similarity.vector_files "
                           "WHERE model_id = %s", (mid,)).fetchone()
        conn.execute("DELETE FROM similarity.vector_files WHERE model_id = %s", (mid,))
        try:
            reply = search(site, model=mid, similar="sample-000001")
        finally:
            conn.execute("INSERT INTO similarity.vector_files VALUES (%s, %s, %s, %s)", row)
    assert reply == {"error": f"model {mid} has no published embeddings, so it cannot be "
                              "searched by vector; publish a model with embeddings.npy"}


def test_get_works_as_post_and_keeps_the_published_rows(site, published):
    import requests

    r = requests.get(f"{site.url}/similarity/q/search/api",
                     params={"model": model_id(site, "sample"), "n": 3,
                             "similar": "'; DROP TABLE similarity.images; --"}, timeout=30)
    assert "unknown image" in json.loads(r.text)["error"]
    ok = search(site, model=model_id(site, "sample"), n=3, similar="sample-000002")
    assert len(ok["results"]) == 3  # the tables are there
