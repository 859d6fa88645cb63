"""The simulated astronomer and the page client: marks made as a person would, written as the page does.

The first tests need no server: the astronomer's size measure and its choice
of marks on a sky made up in the test. The others run against the web page of
the tests' own DaCHS (``web_service``: the built-in sample and 460 synthetic
images) and read what was written back through TAP with pyvo, never from the
server's replies alone.
"""

from __future__ import annotations

import re
import secrets
import time

import numpy as np
import pytest

from vo_similarity.selections.page_client import PageClient, PageError, page_url
from vo_similarity.selections.simulate import (
    Astronomer,
    Sky,
    apparent_size,
    main,
    simulate_selections,
)

MODEL = "builtin"  # tests/services.py: the web service's first model (model_id 1)


# -- the size an astronomer sees ---------------------------------------------------------

def _gaussian(sigma: float, size: int = 128, *, centre=(64.0, 64.0), seed: int = 0):
    """A Gaussian source on a noisy background, scaled into (0, 1] like the pixel store."""
    rng = np.random.default_rng(seed)
    y, x = np.indices((size, size))
    source = np.exp(-0.5 * ((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / sigma**2)
    return 0.2 + 0.7 * source + rng.normal(0.0, 0.01, (size, size))


def test_apparent_size_follows_the_source_and_not_its_place():
    sizes = [apparent_size(_gaussian(s)) for s in (2.0, 4.0, 8.0)]
    assert sizes[0] < sizes[1] < sizes[2]
    # the mean radius of a 2-D Gaussian is sigma * sqrt(pi / 2); the threshold (a
    # tenth of the peak) cuts its wings beyond 2.1 sigma and weighs the rest down,
    # so the measure sits below that, but scales with sigma: noise sets no size
    for sigma, size in zip((2.0, 4.0, 8.0), sizes):
        assert 0.7 * sigma < size < sigma * np.sqrt(np.pi / 2), (sigma, size)
    assert sizes[2] / sizes[1] == pytest.approx(2.0, rel=0.1)
    assert sizes[1] / sizes[0] == pytest.approx(2.0, rel=0.1)
    image = _gaussian(5.0)
    moved = np.roll(image, (20, -15), axis=(0, 1))  # the same pixel values elsewhere
    assert apparent_size(moved) == pytest.approx(apparent_size(image), rel=1e-9)
    assert apparent_size(image[None]) == apparent_size(image)  # [1, S, S] as in pixels.npy


def test_apparent_size_of_nothing_is_zero():
    assert apparent_size(np.zeros((32, 32))) == 0.0  # all masked
    assert apparent_size(np.full((32, 32), 0.3)) == 0.0  # nothing above the background
    with pytest.raises(ValueError, match="2-D"):
        apparent_size(np.zeros((2, 3, 4)))


# -- which marks -------------------------------------------------------------------------

def _sky(n: int = 400, seed: int = 1) -> Sky:
    """Four classes of random sizes, and a few images without class."""
    rng = np.random.default_rng(seed)
    labels = {i: ("" if i % 50 == 49 else "abcd"[i % 4]) for i in range(n)}
    sizes = {i: float(rng.uniform(5.0, 20.0)) for i in range(n)}
    return Sky(labels, {i: f"ivo://x/~?{i}" for i in range(n)}, sizes=sizes)


def test_an_astronomer_without_mistakes_marks_its_own_notion():
    sky = _sky()
    for notion in ("class+size", "class"):
        astronomer = Astronomer(mistake_rate=0.0, notion=notion, marks_per_query=20)
        for query in range(0, 40, 4):
            shown = [i for i in range(100, 160) if i != query]
            marks = astronomer.marks(sky, query, shown)
            assert len(marks) == 20 and len({i for i, _ in marks}) == 20
            assert all(i in shown for i, _ in marks)
            assert all(s == astronomer.finds_similar(sky, query, i) for i, s in marks)
            yes = sum(astronomer.finds_similar(sky, query, i) for i in shown)
            # both kinds, as many similar as there are up to half
            assert sum(s for _, s in marks) == min(yes, 10)
    # the personal notion is not the class: same class, sizes 2x apart
    sky = Sky({0: "a", 1: "a"}, {0: "q", 1: "c"}, sizes={0: 5.0, 1: 10.0})
    assert Astronomer(notion="class").finds_similar(sky, 0, 1)
    assert not Astronomer(notion="class+size").finds_similar(sky, 0, 1)
    assert Astronomer(notion="class+size", size_tolerance=2.0).finds_similar(sky, 0, 1)


def test_mistakes_come_at_the_stated_rate_and_random_marks_ignore_the_class():
    sky, shown = _sky(), list(range(200, 260))
    rate, n_queries = 0.2, 150
    flipped = total = 0
    astronomer = Astronomer(mistake_rate=rate, seed=3)
    for query in range(n_queries):
        if not sky.labels[query]:
            continue
        for i, s in astronomer.marks(sky, query, shown):
            total += 1
            flipped += s != astronomer.finds_similar(sky, query, i)
    # binomial: 4.5 standard deviations either side
    assert abs(flipped / total - rate) < 4.5 * np.sqrt(rate * (1 - rate) / total)
    same, other = [], []
    for query in range(n_queries):
        for i, s in Astronomer(notion="random", seed=3).marks(sky, query, shown):
            (same if sky.labels[i] == sky.labels[query] else other).append(s)
    for marks in (same, other):
        assert abs(np.mean(marks) - 0.5) < 4.5 * np.sqrt(0.25 / len(marks))


def test_marks_depend_on_seed_query_and_what_is_shown_only():
    sky, shown = _sky(), list(range(100, 150))
    a = Astronomer(seed=5)
    assert a.marks(sky, 8, shown) == a.marks(sky, 8, shown)
    assert a.marks(sky, 8, shown) != Astronomer(seed=6).marks(sky, 8, shown)
    assert len(a.marks(sky, 8, shown, 7)) == 7  # the last query of a run
    assert len(a.marks(sky, 8, shown, 400)) == a.marks_per_query
    assert len(a.marks(sky, 8, shown[:5])) == 5  # fewer shown than marks_per_query
    assert all(i != 120 for i, _ in a.marks(sky, 120, shown))  # never the query itself


def test_bad_settings_and_unjudgeable_queries_are_refused():
    for bad in ({"notion": "colour"}, {"mistake_rate": 1.5}, {"size_tolerance": 0.5},
                {"marks_per_query": 0}, {"page_size": 101}):
        with pytest.raises(ValueError):
            Astronomer(**bad)
    with pytest.raises(ValueError, match="no class"):
        Astronomer().marks(_sky(), 49, list(range(100, 120)))  # 49 has no label
    assert len(Astronomer(notion="random").marks(_sky(), 49, list(range(100, 120)))) == 20


def test_the_page_url_from_the_server_or_the_page():
    page = "http://h:8080/similarity/q/web/custom/"
    for given in ("http://h:8080", "http://h:8080/", page, page[:-1], page + "#id=x&model=1"):
        assert page_url(given) == page
    with pytest.raises(ValueError, match="http"):
        page_url("h:8080")


# -- through the page ----------------------------------------------------------------------

def rows_of(tap, session_id: str):
    """The rows of similarity.selections written under ``session_id``, read through TAP."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", session_id)  # safe in the ADQL literal
    return tap.run_sync(
        "SELECT model_id, image_id, chosen_id, is_similar, created, session_id "
        f"FROM similarity.selections WHERE session_id = '{session_id}'").to_table()


def _session() -> str:
    return "simtest-" + secrets.token_hex(6)


@pytest.mark.dachs
def test_the_client_reads_the_page_and_records_what_it_marks(page_url, page_service, page_tap,
                                                          new_address):
    client = PageClient(page_url, source_address=new_address())
    model_id = client.model_id(MODEL)
    assert client.model_id(str(model_id)) == model_id
    assert client.config()["limits"]["record_max"] == 100
    manifest = page_service.manifest
    query = str(manifest["obs_publisher_did"][600])  # a synthetic image
    first, second = (client.neighbours(query, model_id, p) for p in (0, 1))
    assert [r["rank"] for r in first["results"]] == list(range(1, 51))
    assert [r["rank"] for r in second["results"]] == list(range(51, 101))
    similar = [r["obs_publisher_did"] for r in first["results"][:2]]
    not_similar = [r["obs_publisher_did"] for r in first["results"][10:13]]
    session = _session()
    assert client.token is None
    assert client.record(query, similar, not_similar, model=model_id, session=session) == 5
    ids = {str(d): int(i) for d, i in zip(manifest["obs_publisher_did"], manifest["image_id"])}
    rows = rows_of(page_tap, session)
    assert sorted((int(r["model_id"]), int(r["image_id"]), int(r["chosen_id"]),
                   bool(r["is_similar"])) for r in rows) == sorted(
        [(model_id, ids[query], ids[d], True) for d in similar]
        + [(model_id, ids[query], ids[d], False) for d in not_similar])
    # more marks than one request takes are split as the page splits them
    many = [r["obs_publisher_did"] for p in (0, 1)
            for r in client.neighbours(query, model_id, p, n=60)["results"]]
    assert len(set(many)) == 120
    assert client.record(query, many, model=model_id, session=session + "b") == len(many)
    assert len(rows_of(page_tap, session + "b")) == len(many)


@pytest.mark.dachs
def test_a_stale_token_is_renewed_as_the_page_does(page_url, page_service, page_tap,
                                                   new_address):
    client = PageClient(page_url, source_address=new_address())
    # what a token of a server that has restarted since looks like: signed with
    # another key (the server keeps its key in memory only)
    stale = f"{int(time.time())}.{'ab' * 8}.{'0' * 64}"
    client.token = stale
    client.http.cookies.set("vosim_token", stale)
    dids = [str(d) for d in page_service.manifest["obs_publisher_did"][700:703]]
    session = _session()
    assert client.record(dids[0], dids[1:], model=client.model_id(MODEL), session=session) == 2
    assert client.token != stale
    assert len(rows_of(page_tap, session)) == 2


@pytest.mark.dachs
def test_a_refused_write_raises_and_writes_nothing(page_url, page_service, page_tap,
                                                   new_address):
    client = PageClient(page_url, source_address=new_address())
    query = str(page_service.manifest["obs_publisher_did"][710])
    session = _session()
    with pytest.raises(PageError, match="no published image") as refused:
        client.record(query, ["ivo://nowhere/~?x"], model=1, session=session)
    assert refused.value.status == 404
    with pytest.raises(PageError, match="no published model") as unknown:
        client.model_id("no-such-model")
    assert unknown.value.status == 404
    assert len(rows_of(page_tap, session)) == 0


@pytest.fixture(scope="module")
def simulated(page_url, page_service, new_address):
    """A consistent and a random astronomer, 500 marks each, through the page.

    The random one marks 10 images a query: 50 writes from one address, more
    than the 30 a minute the server takes, so its client waits out a 429.
    """
    runs = {}
    for name, astronomer in (("consistent", Astronomer(seed=11)),
                             ("random", Astronomer(seed=12, notion="random",
                                                   marks_per_query=10))):
        client = PageClient(page_url, source_address=new_address())
        session = f"simtest-{name}-{secrets.token_hex(4)}"
        start = time.monotonic()
        written = simulate_selections(page_service.work, page_url, model=MODEL, n_marks=500,
                                      astronomer=astronomer, session=session, client=client)
        runs[name] = {"written": written, "session": session, "astronomer": astronomer,
                      "waited": client.waited, "seconds": time.monotonic() - start}
    return runs


def _shown(work, n: int = 50) -> dict[int, set[int]]:
    """image_id -> the image_ids of the first page of its neighbours (the model's files)."""
    model = work.model(MODEL)
    ids, neighbours = np.load(model.embedding_ids), np.load(model.neighbour_ids)
    return {int(i): {int(j) for j in row[:n]} for i, row in zip(ids, neighbours)}


@pytest.mark.dachs
def test_simulated_marks_are_in_the_table_as_shown_on_the_page(simulated, page_service,
                                                              page_tap):
    shown = _shown(page_service.work)
    sky = Sky.from_workdir(page_service.work)
    for name, run in simulated.items():
        rows = rows_of(page_tap, run["session"])
        assert run["written"] == 500 and len(rows) == 500, name
        assert {int(m) for m in rows["model_id"]} == {1}
        pairs = [(int(q), int(c)) for q, c in zip(rows["image_id"], rows["chosen_id"])]
        assert len(set(pairs)) == 500  # each query looked at once, each image marked once
        per_query = np.unique([q for q, _ in pairs], return_counts=True)[1]
        per = run["astronomer"].marks_per_query
        assert per_query.max() == per and len(per_query) == 500 // per
        assert all(sky.labels[q] for q, _ in pairs)  # queries from the synthetic sky
        assert all(c in shown[q] for q, c in pairs), "a mark of an image the page did not show"
    assert simulated["random"]["waited"] > 0  # the 429 was waited out, nothing lost
    assert simulated["consistent"]["waited"] == 0


@pytest.mark.dachs
def test_the_consistent_astronomer_marks_by_class_and_size_the_random_one_does_not(
        simulated, page_service, page_tap):
    sky = Sky.from_workdir(page_service.work)
    share = {}
    for name, run in simulated.items():
        rows = rows_of(page_tap, run["session"])
        query, chosen = np.asarray(rows["image_id"], int), np.asarray(rows["chosen_id"], int)
        similar = np.asarray(rows["is_similar"], bool)
        same = np.array([sky.labels[q] == sky.labels[c] for q, c in zip(query, chosen)])
        assert same.sum() >= 50 and (~same).sum() >= 50, (name, same.sum())
        share[name] = (similar[same].mean(), similar[~same].mean())
        honest = np.array([Astronomer(notion="class+size").finds_similar(sky, q, c)
                           for q, c in zip(query, chosen)])
        agree = (similar == honest).mean()
        # binomial, 500 marks: 4.5 standard deviations either side
        expected = 0.9 if name == "consistent" else 0.5
        assert abs(agree - expected) < 4.5 * np.sqrt(expected * (1 - expected) / 500), \
            (name, agree)
        if name == "consistent":
            # same class, other size: not similar to this astronomer but for mistakes
            other_size = same & ~honest
            assert other_size.sum() >= 30
            assert similar[other_size].mean() < 0.25
    consistent, random = share["consistent"], share["random"]
    # same class is marked similar far more often than another class -- by the
    # consistent astronomer; the random one cannot tell them apart
    assert consistent[0] - consistent[1] > 0.3, consistent
    assert abs(random[0] - random[1]) < 0.2, random
    assert (consistent[0] - consistent[1]) - (random[0] - random[1]) > 0.3


@pytest.mark.dachs
def test_the_command_line_records_through_the_page(page_url, page_service, page_tap,
                                                   new_address, capsys):
    session = _session()
    status = main([str(page_service.work.root), "--url", page_service.url, "--model", MODEL,
                   "--marks", "30", "--random", "--seed", "7", "--session", session,
                   "--source-address", new_address()])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert f"recorded 30 selections (notion random, session {session})" in out.out
    assert len(rows_of(page_tap, session)) == 30
    status = main([str(page_service.work.root), "--url", page_url, "--model", "no-such-model",
                   "--source-address", new_address()])
    err = capsys.readouterr().err
    assert status == 1 and "no published model 'no-such-model'" in err
