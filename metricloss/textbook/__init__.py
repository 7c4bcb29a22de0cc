"""The textbook versions of metricloss's losses: each loss as its paper writes it.

For every public loss ``metricloss.some_loss`` there is a ``metricloss.textbook.some_loss`` with the same
arguments (but ``backend``) and the same ``(value, grad)`` return, written for reading, not for speed: loops over
the pairs, triplets or tuples of the formula, one line of code per line of math, and the gradient accumulated
term by term by the chain rule beside each term, in float64. They are O(B²) or O(B³) where the formula is.

They are the oracle the fast losses are tested against (value and gradient, on every registered configuration),
and the code to read beside a loss's docstring.

>>> import numpy as np
>>> from metricloss import textbook
>>> x = np.array([[0.0, 0.0], [0.0, 0.5], [0.6, 0.0]])
>>> value, grad = textbook.contrastive_loss(x, np.array([0, 0, 1]))
>>> round(value, 6)
0.076325
"""

from .center import triplet_center_loss
from .infonce import multiple_negatives_ranking_loss, ntxent_loss, supcon_loss
from .lifted import generalized_lifted_structure_loss, lifted_structure_loss
from .margin import margin_loss
from .npair import npair_loss, npair_pairs_loss
from .pairs import (
    contrastive_loss,
    contrastive_pair_loss,
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
)
from .quadruplet import quadruplet_loss, quadruplet_margin_loss
from .softmax import circle_loss, multi_similarity_loss
from .triplet import triplet_loss, triplet_margin_loss
from .warp import warp_embedding_loss, warp_loss

__all__ = [
    "circle_loss",
    "contrastive_loss",
    "contrastive_pair_loss",
    "cosine_embedding_loss",
    "generalized_lifted_structure_loss",
    "hinge_embedding_loss",
    "lifted_structure_loss",
    "margin_loss",
    "margin_ranking_loss",
    "multi_similarity_loss",
    "multiple_negatives_ranking_loss",
    "npair_loss",
    "npair_pairs_loss",
    "ntxent_loss",
    "quadruplet_loss",
    "quadruplet_margin_loss",
    "supcon_loss",
    "triplet_center_loss",
    "triplet_loss",
    "triplet_margin_loss",
    "warp_embedding_loss",
    "warp_loss",
]
