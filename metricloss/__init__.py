"""metricloss: metric-learning (ranking) losses as pure functions returning ``(value, grad)``.

Every loss returns its value (a Python float) and its analytic gradient with respect to each differentiable
input (shaped and typed like that input; a tuple when there are several), derived by hand beside the code.

>>> import numpy as np
>>> import metricloss
>>> x = np.random.default_rng(0).standard_normal((8, 4))
>>> value, grad = metricloss.contrastive_loss(x, np.array([0, 0, 1, 1, 2, 2, 3, 3]))
>>> grad.shape
(8, 4)
"""

from ._config import config_context, get_config, set_config
from ._reduce import REDUCTIONS
from ._version import __version__
from .distances import (
    DISTANCES,
    SIMILARITIES,
    SYMMETRIC_DISTANCES,
    paired_distances,
    pairwise_distances,
    pairwise_distances_vjp,
    pairwise_similarities,
    pairwise_similarities_vjp,
)
from .losses.center import ABSENT_CLASSES, init_centers, triplet_center_loss
from .losses.infonce import multiple_negatives_ranking_loss, ntxent_loss, supcon_loss
from .losses.lifted import generalized_lifted_structure_loss, lifted_structure_loss
from .losses.margin import margin_loss
from .losses.npair import npair_loss, npair_pairs_loss
from .losses.pairs import (
    CONTRASTIVE_FORMS,
    contrastive_loss,
    contrastive_pair_loss,
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
)
from .losses.quadruplet import quadruplet_loss, quadruplet_margin_loss
from .losses.softmax import (
    CIRCLE_FORMS,
    CIRCLE_SIMILARITIES,
    MULTI_SIMILARITY_MININGS,
    circle_loss,
    multi_similarity_loss,
)
from .losses.triplet import INCOMPLETE_ANCHORS, MININGS, triplet_loss, triplet_margin_loss
from .losses.warp import WARP_SAMPLINGS, WARP_WEIGHTINGS, relevance_matrix, warp_embedding_loss, warp_loss
from .metrics import (
    mean_average_precision_at_r,
    mean_reciprocal_rank,
    precision_at_1,
    r_precision,
    recall_at_k,
    retrieval_metrics,
)
from .mining import (
    MINED_PAIRS,
    MINED_TRIPLETS,
    SELECTIONS,
    TRIPLET_KINDS,
    batch_triplets,
    classify_triplets,
    distance_weighted_negatives,
    mine_pairs,
    mine_triplets,
    pairs_to_triplets,
    triplet_counts,
)
from .sampling import mine_dataset, pk_batches, random_negatives, rank_window_negatives

__all__ = [
    "ABSENT_CLASSES",
    "CIRCLE_FORMS",
    "CIRCLE_SIMILARITIES",
    "CONTRASTIVE_FORMS",
    "DISTANCES",
    "INCOMPLETE_ANCHORS",
    "MINED_PAIRS",
    "MINED_TRIPLETS",
    "MININGS",
    "MULTI_SIMILARITY_MININGS",
    "REDUCTIONS",
    "SELECTIONS",
    "SIMILARITIES",
    "SYMMETRIC_DISTANCES",
    "TRIPLET_KINDS",
    "WARP_SAMPLINGS",
    "WARP_WEIGHTINGS",
    "__version__",
    "batch_triplets",
    "circle_loss",
    "classify_triplets",
    "config_context",
    "contrastive_loss",
    "contrastive_pair_loss",
    "cosine_embedding_loss",
    "distance_weighted_negatives",
    "generalized_lifted_structure_loss",
    "get_config",
    "hinge_embedding_loss",
    "init_centers",
    "lifted_structure_loss",
    "margin_loss",
    "margin_ranking_loss",
    "mean_average_precision_at_r",
    "mean_reciprocal_rank",
    "mine_dataset",
    "mine_pairs",
    "mine_triplets",
    "multi_similarity_loss",
    "multiple_negatives_ranking_loss",
    "npair_loss",
    "npair_pairs_loss",
    "ntxent_loss",
    "paired_distances",
    "pairs_to_triplets",
    "pairwise_distances",
    "pairwise_distances_vjp",
    "pairwise_similarities",
    "pairwise_similarities_vjp",
    "pk_batches",
    "precision_at_1",
    "quadruplet_loss",
    "quadruplet_margin_loss",
    "r_precision",
    "random_negatives",
    "rank_window_negatives",
    "recall_at_k",
    "relevance_matrix",
    "retrieval_metrics",
    "set_config",
    "supcon_loss",
    "triplet_center_loss",
    "triplet_counts",
    "triplet_loss",
    "triplet_margin_loss",
    "warp_embedding_loss",
    "warp_loss",
]
