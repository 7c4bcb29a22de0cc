"""The engine's triplet selections on a batch's distances, as index arrays (a, p, n), for the losses that mine
their triplets: batch-hard (:func:`hardest_triplets`) and FaceNet's semi-hard negatives as TF-Addons mines them
(:func:`semihard_triplets`). The public miners are :mod:`metricloss.mining`'s and :mod:`metricloss.sampling`'s."""

import numpy as np

from ._kernels import NO_SELF


def hardest_triplets(batch, incomplete_anchors="drop"):
    """Batch-hard: per anchor the farthest positive and the closest negative, as index arrays (a, p, n).

    ``incomplete_anchors="drop"`` leaves out anchors without a positive or without a negative; ``"keep"`` keeps
    them (TF-Addons, omoindrot) with p = -1 (d⁺ = 0) where there is no positive and, where there is no negative,
    the farthest other reference as n. A lone sample has neither and is always left out."""
    d, self_offset = batch.d, batch.self_offset
    positive, negative = batch.kernels.select_per_anchor(d, batch.classes, self_offset, 0, 0)
    if incomplete_anchors == "drop":
        kept = (positive >= 0) & (negative >= 0)
    else:
        kept = (positive >= 0) | (negative >= 0)
        for a in np.flatnonzero(kept & (negative < 0)):
            row = batch.row(a)
            if self_offset != NO_SELF:
                row[a + self_offset] = -np.inf
            negative[a] = np.argmax(row)
    anchors = np.flatnonzero(kept)
    return anchors, positive[anchors], negative[anchors]


def semihard_triplets(batch):
    """FaceNet's semi-hard triplets as TF-Addons mines them, as index arrays (a, p, n): per positive pair (a, p),
    the closest negative farther than p (d_an > d_ap), or where there is none the farthest negative; pairs whose
    anchor has no negative are left out. (:func:`metricloss.sampling.mine_dataset` and
    :func:`metricloss.mining.batch_triplets` have no such fallback: their semi-hard choice is -1 or left out where
    no negative is farther than the positive.)"""
    d, self_offset = batch.d, batch.self_offset
    n_positives, _ = batch.candidate_counts()
    offsets = np.concatenate([[0], np.cumsum(n_positives)])
    positives = np.empty(offsets[-1], dtype=np.int64)
    negatives = np.empty(offsets[-1], dtype=np.int64)
    batch.kernels.semihard_negatives(d, batch.classes, self_offset, offsets, positives, negatives)
    anchors = np.repeat(np.arange(d.shape[0]), n_positives)
    kept = negatives >= 0
    return anchors[kept], positives[kept], negatives[kept]
