"""The selection term: a supervised contrastive loss over recorded selections.

An astronomer's marks say, for a query image, which shown images are similar
to it and which are not. They enter training as the supervised contrastive
loss of Khosla et al. 2020 ("Supervised Contrastive Learning",
arXiv:2004.11362, eq. 2, :math:`\\mathcal{L}^{sup}_{out}`), with the labels
replaced by the marks:

* the anchors are the two views of every query image of the step;
* an anchor's positives are the other view of its own image (as in SimCLR)
  and both views of every image marked *similar* to its query;
* its denominator holds every other view of the step: the images marked
  *not similar* to its query (hard negatives, which the sampler guarantees to
  be there, optionally up-weighted as in Robinson et al. 2021, "Contrastive
  Learning with Hard Negative Samples", arXiv:2010.04592) and the other images
  of the step (ordinary negatives).

For anchor view :math:`a` with positives :math:`P(a)` and denominator set
:math:`A(a)` (all views but :math:`a`),

.. math::

    \\ell_a = -\\frac{1}{|P(a)|} \\sum_{p \\in P(a)}
        \\log \\frac{\\exp(z_a \\cdot z_p / \\tau)}
                   {\\sum_{k \\in A(a)} w_{ak} \\exp(z_a \\cdot z_k / \\tau)},

with :math:`w_{ak}` the hard-negative weight where :math:`k` is a view of an
image marked not similar to :math:`a`'s query, 1 otherwise; the loss is the
mean of :math:`\\ell_a` over the anchor views. With no marked pair at all it
is exactly SimCLR's NT-Xent loss over the step's images (a test checks this
against lightly's ``NTXentLoss``).

Training (:func:`vo_similarity.learn.train.train`) applies it to the
backbone's features, the space the embedding is taken from, not to the
projection head's output that SimCLR's term uses: on the synthetic sky the
head's output absorbed the marks and left the embedding almost as it was.

:func:`pair_batch` turns a batch of marked pairs into the masks the loss takes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PairBatch", "SelectionContrastiveLoss", "pair_batch"]


class PairBatch:
    """The images of one step's marked pairs and the relations between them.

    Attributes:
        rows: ``[U]`` int64, the distinct images of the step (indices into whatever
            the pair indices referred to), in ascending order.
        positive: ``[U, U]`` bool, ``positive[i, j]``: image ``j`` is marked similar
            to query ``i``.
        negative: ``[U, U]`` bool, ``negative[i, j]``: image ``j`` is marked not
            similar to query ``i``.
        anchors: ``[U]`` bool, image ``i`` is a query of the step.
    """

    def __init__(self, rows: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 anchors: torch.Tensor):
        self.rows, self.positive, self.negative, self.anchors = rows, positive, negative, anchors

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device) -> PairBatch:
        return PairBatch(self.rows, self.positive.to(device), self.negative.to(device),
                         self.anchors.to(device))


def pair_batch(query: torch.Tensor, chosen: torch.Tensor, similar: torch.Tensor) -> PairBatch:
    """The :class:`PairBatch` of marked pairs ``(query[m], chosen[m], similar[m])``.

    Args:
        query: ``[M]`` int64 image indices of the queries.
        chosen: ``[M]`` int64 image indices of the marked images; a pair whose chosen
            image is its query says nothing and is left out.
        similar: ``[M]`` bool, whether the pair is marked similar.

    A pair that appears twice with both labels is a positive (the caller is
    expected to have merged repeated marks into one label per pair).
    """
    keep = query != chosen
    query, chosen, similar = query[keep], chosen[keep], similar[keep].bool()
    rows, inverse = torch.unique(torch.cat([query, chosen]), return_inverse=True)
    qi, ci = inverse[:len(query)], inverse[len(query):]
    u = len(rows)
    positive = torch.zeros(u, u, dtype=torch.bool)
    negative = torch.zeros(u, u, dtype=torch.bool)
    positive[qi[similar], ci[similar]] = True
    negative[qi[~similar], ci[~similar]] = True
    negative &= ~positive
    anchors = torch.zeros(u, dtype=torch.bool)
    anchors[qi] = True
    return PairBatch(rows, positive, negative, anchors)


class SelectionContrastiveLoss(nn.Module):
    """Supervised contrastive loss over marked pairs (Khosla et al. 2020, arXiv:2004.11362).

    Args:
        temperature: :math:`\\tau` (Khosla et al. use 0.1).
        negative_weight: :math:`w` of the views of images marked not similar in the
            anchor's denominator (1: plain SupCon; > 1 pushes them away harder).
    """

    def __init__(self, temperature: float = 0.1, negative_weight: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if negative_weight <= 0:
            raise ValueError("negative_weight must be > 0")
        self.temperature = temperature
        self.negative_weight = negative_weight

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, batch: PairBatch) -> torch.Tensor:
        """The loss of two views ``z1``, ``z2`` ``[U, D]`` of the images of ``batch``.

        Row ``i`` of ``z1`` and ``z2`` is image ``batch.rows[i]``; the projections
        need not be normalised (they are here).
        """
        u = z1.shape[0]
        if u != len(batch):
            raise ValueError(f"{u} embeddings for a batch of {len(batch)} images")
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        dev = z.device
        logits = z @ z.T / self.temperature  # [2U, 2U]: view i of image i % U
        self_mask = torch.eye(2 * u, dtype=torch.bool, device=dev)
        other_view = torch.eye(u, dtype=torch.bool, device=dev).repeat(2, 2) & ~self_mask
        positive = batch.positive.to(dev).repeat(2, 2) | other_view
        anchors = batch.anchors.to(dev).repeat(2)
        if not anchors.any():
            return z.sum() * 0.0
        if self.negative_weight != 1.0:
            negative = batch.negative.to(dev).repeat(2, 2) & ~positive
            logits = logits + negative * math.log(self.negative_weight)
        denom = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
        log_prob = logits - denom  # positives carry no hard-negative weight
        per_anchor = -(log_prob * positive).sum(1) / positive.sum(1)
        return per_anchor[anchors].mean()
