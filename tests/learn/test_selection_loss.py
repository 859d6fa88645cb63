"""The selection term against a hand-written loop over anchors (Khosla et al. 2020, eq. 2)."""

import math

import pytest
import torch
from lightly.loss import NTXentLoss

from vo_similarity.learn.selection_loss import SelectionContrastiveLoss, pair_batch


def reference(z1, z2, query, chosen, similar, temperature, negative_weight=1.0):
    """SupCon's L_out written out view by view in float64, from the marks themselves."""
    u_ids = sorted(set(query.tolist()) | set(chosen.tolist()))
    views = [(img, v) for v in range(2) for img in u_ids]
    vec = {}
    for i, img in enumerate(u_ids):
        for v, z in enumerate((z1, z2)):
            x = z[i].double()
            vec[img, v] = x / x.norm()
    marks = [(int(q), int(c), bool(s)) for q, c, s in zip(query, chosen, similar) if q != c]
    losses = []
    for q in sorted({m[0] for m in marks}):
        similar_to = {c for qq, c, s in marks if qq == q and s}
        not_similar = {c for qq, c, s in marks if qq == q and not s} - similar_to
        for v in range(2):
            a = (q, v)
            denom = 0.0
            for k in views:
                if k == a:
                    continue
                w = negative_weight if k[0] in not_similar else 1.0
                denom += w * math.exp(float(vec[a] @ vec[k]) / temperature)
            positives = [(q, 1 - v)] + [(c, w) for c in sorted(similar_to) for w in range(2)]
            terms = [math.log(math.exp(float(vec[a] @ vec[p]) / temperature) / denom)
                     for p in positives]
            losses.append(-sum(terms) / len(terms))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("negative_weight", [1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_loop_reference(seed, negative_weight):
    gen = torch.Generator().manual_seed(seed)
    m = 30
    query = torch.randint(0, 6, (m,), generator=gen)
    chosen = torch.randint(0, 15, (m,), generator=gen)
    similar = torch.rand(m, generator=gen) < 0.4
    batch = pair_batch(query, chosen, similar)
    z1 = torch.randn(len(batch), 8, generator=gen)
    z2 = torch.randn(len(batch), 8, generator=gen)
    loss = SelectionContrastiveLoss(0.2, negative_weight)(z1, z2, batch)
    # the masks are indexed by the sorted distinct images, as the reference's views are
    assert batch.rows.tolist() == sorted(set(query.tolist()) | set(chosen.tolist()))
    expected = reference(z1, z2, query, chosen, similar, 0.2, negative_weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_without_marked_relations_it_is_simclr_nt_xent():
    """Every image a query whose only mark is itself: only the other view is positive."""
    gen = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(10, 16, generator=gen), torch.randn(10, 16, generator=gen)
    ids = torch.arange(10)
    batch = pair_batch(ids, ids, torch.ones(10, dtype=torch.bool))
    assert len(batch) == 0  # a mark of an image against itself says nothing
    # anchors on every image, no marked pair: build the batch by hand
    batch = pair_batch(ids, ids.roll(1), torch.zeros(10, dtype=torch.bool))
    ours = SelectionContrastiveLoss(0.3)(z1, z2, batch)
    lightly = NTXentLoss(temperature=0.3)(z1, z2)
    assert ours.item() == pytest.approx(lightly.item(), rel=1e-5)


def test_gradient_steps_rank_similar_above_not_similar():
    """Free embeddings on which a not-similar image is the query's nearest: a few
    gradient steps of the loss put both similar images above both not-similar ones."""
    gen = torch.Generator().manual_seed(4)
    batch = pair_batch(torch.tensor([0, 0, 0, 0]), torch.tensor([1, 2, 3, 4]),
                       torch.tensor([True, True, False, False]))
    z = torch.randn(2, 5, 8, generator=gen, requires_grad=True)
    loss_fn = SelectionContrastiveLoss(0.1, negative_weight=2.0)

    def similarity_to_query():  # mean cosine over the four pairs of views
        n = torch.nn.functional.normalize(z.detach(), dim=2)
        return torch.einsum("vd,wjd->j", n[:, 0], n)[1:] / 4

    before = similarity_to_query()
    assert before[2:].max() > before[:2].min()
    opt = torch.optim.SGD([z], lr=0.05)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(z[0], z[1], batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = similarity_to_query()
    assert after[:2].min() > after[2:].max()
    assert losses[-1] < losses[0] / 2


def test_a_batch_without_queries_costs_nothing_and_bad_values_are_refused():
    batch = pair_batch(torch.tensor([1]), torch.tensor([1]), torch.tensor([True]))
    z = torch.zeros(0, 4, requires_grad=True)
    loss = SelectionContrastiveLoss()(z, z, batch)
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="temperature"):
        SelectionContrastiveLoss(0.0)
    with pytest.raises(ValueError, match="negative_weight"):
        SelectionContrastiveLoss(0.1, 0.0)
    with pytest.raises(ValueError, match="embeddings"):
        SelectionContrastiveLoss()(torch.zeros(3, 4), torch.zeros(3, 4),
                                   pair_batch(torch.tensor([0]), torch.tensor([1]),
                                              torch.tensor([True])))
