"""Triplet kernels in NumPy: batch-all (hinge and soft margin, with the references or within one batch), FaceNet's
semi-hard negatives, and the per-anchor choice of one positive and one negative (hardest, easiest, semi-hard).

A triplet (a, p, n) is active iff d_an < d_ap + m (compared in float64); its hinge value is (d_ap + m) − d_an.
Ties between candidates go to the lowest index.
"""

import numpy as np

from .distances import gram_to_distances, symmetrize


def _anchor_candidates(classes, self_offset, a):
    """Anchor a's positive and negative reference indices, in increasing order."""
    same = classes.ref_class == classes.anchor_class[a]
    candidate = np.ones(same.size, dtype=bool)
    if 0 <= a + self_offset < same.size:
        candidate[a + self_offset] = False
    return np.flatnonzero(same & candidate), np.flatnonzero(~same & candidate)


def batch_all_triplets(d, classes, self_offset, margin, semihard_only, out, divide):
    """Every valid triplet (a, p, n) (``semihard_only``: those with d_an >= d_ap), each [d_ap − d_an + m]₊.

    Writes every element of ``out`` (the shape of d; it may be d itself: row a of d is read before row a of out is
    written) with the unweighted cotangent g = ∂(Σ terms)/∂d: g[a, p] = #active negatives of (a, p),
    g[a, n] = −#positives with which (a, n) is active; with ``divide``, g / d (0 where d = 0), the Euclidean VJP's
    scale. Returns per anchor the sum of the terms, the number of active terms and the number of valid triplets.

    Per anchor: sort the negatives' distances once; for each positive a binary search gives the active
    negatives (d_ap <= d_an < d_ap + m for semi-hard) and prefix sums their total: O(R log R) per anchor, O(B R)
    memory, no B³ array.
    """
    n_anchors = d.shape[0]
    values, n_active, n_valid = np.zeros(n_anchors), np.zeros(n_anchors, np.int64), np.zeros(n_anchors, np.int64)
    for a in range(n_anchors):
        positives, negatives = _anchor_candidates(classes, self_offset, a)
        n_valid[a] = positives.size * negatives.size
        row = d[a].astype(np.float64)
        g = np.zeros_like(row)
        if n_valid[a]:
            d_ap, d_an = row[positives], row[negatives]
            neg_sorted = np.sort(d_an)
            prefix = np.concatenate([[0.0], np.cumsum(neg_sorted)])
            thresholds = d_ap + margin
            hi = np.searchsorted(neg_sorted, thresholds, side="left")
            lo = np.searchsorted(neg_sorted, d_ap, side="left") if semihard_only else np.zeros_like(hi)
            count = np.maximum(hi - lo, 0)
            values[a] = np.sum(count * thresholds - np.where(count > 0, prefix[hi] - prefix[lo], 0.0))
            n_active[a] = count.sum()
            g[positives] = count

            order = np.argsort(d_ap, kind="stable")
            pos_sorted, thresholds_sorted = d_ap[order], thresholds[order]
            first = np.searchsorted(thresholds_sorted, d_an, side="right")
            last = np.searchsorted(pos_sorted, d_an, side="right") if semihard_only else positives.size
            g[negatives] = -np.maximum(last - first, 0)
        if divide:
            g = np.divide(g, row, out=np.zeros_like(g), where=row > 0)
        out[a] = g
    return values, n_active, n_valid


def soft_all_triplets(d, classes, self_offset, margin, smallest, out, divide):
    """Every valid triplet (a, p, n), each softplus(d_ap − d_an + m) (the soft margin of Hermans et al. on all
    triplets: never 0, so every triplet has a slope, σ(z) = ∂softplus(z)/∂z).

    Writes every element of ``out`` (the shape of d; it may be d itself: row a of d is read before row a of out is
    written) with the unweighted cotangent g = ∂(Σ terms)/∂d: g[a, p] = Σ_n σ(z_apn), g[a, n] = −Σ_p σ(z_apn);
    with ``divide``, g / d (0 where d = 0). A term at most ``smallest`` (half the input dtype's smallest
    subnormal number, so that the term rounds to 0 in that dtype: a softplus of z below about −104 in float32) is
    0, and so is its slope, as they would be computed in that dtype. Returns per anchor the sum of the terms, the
    number of terms that are not 0 and the number of valid triplets, like :func:`batch_all_triplets`.

    Per anchor one P×N matrix of z (O(B R) memory, no B³ array); softplus(z) = max(z, 0) + log1p(e^−|z|) and
    σ(z) = e^{z − softplus(z)}, neither overflowing for any z.
    """
    n_anchors = d.shape[0]
    values, n_nonzero, n_valid = np.zeros(n_anchors), np.zeros(n_anchors, np.int64), np.zeros(n_anchors, np.int64)
    for a in range(n_anchors):
        positives, negatives = _anchor_candidates(classes, self_offset, a)
        n_valid[a] = positives.size * negatives.size
        row = d[a].astype(np.float64)
        g = np.zeros_like(row)
        if n_valid[a]:
            z = row[positives][:, None] - row[negatives][None, :] + margin
            terms = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
            slopes = np.exp(z - terms)
            below = terms <= smallest
            terms[below], slopes[below] = 0.0, 0.0
            values[a], n_nonzero[a] = terms.sum(), np.count_nonzero(terms)
            g[positives] = slopes.sum(axis=1)
            g[negatives] = -slopes.sum(axis=0)
        if divide:
            g = np.divide(g, row, out=np.zeros_like(g), where=row > 0)
        out[a] = g
    return values, n_nonzero, n_valid


def batch_all_symmetric(d, classes, margin, semihard_only, out, divide, gram=None):
    """:func:`batch_all_triplets` within one batch (the references are the anchors, self_offset 0), with the
    cotangent written symmetrized, g + gᵀ: both ends of every pair are rows of the same embeddings, so this is what
    the distances' pullback needs, and it then skips its own symmetrize (``pull(..., symmetric=True)``).

    Here: the per-anchor kernel, then the symmetrize. The Numba twin writes g + gᵀ in one sweep instead: pass 1
    counts, per anchor, each positive's active negatives and keeps its threshold d_ap + m (and d_ap, for semi-hard)
    in a small table; pass 2 gives entry (i, j) of a negative pair anchor i's count (its positives whose
    thresholds exceed d_ij) plus anchor j's (from the table), and of a positive pair the two anchors' counts.

    With ``gram = (x, sq_norm, ratio, root)``, d holds the Gram matrix x xᵀ on entry, to be turned into distances
    first (:func:`gram_to_distances`; the Numba twin does it row by row in its first pass, while the row is in
    cache).
    """
    if gram is not None:
        gram_to_distances(d, gram[0], gram[0], gram[1], gram[1], gram[2], gram[3])
    totals = batch_all_triplets(d, classes, 0, margin, semihard_only, out, divide)
    symmetrize(out)
    return totals


def semihard_negatives(d, classes, self_offset, offsets, positives, negatives):
    """FaceNet's semi-hard negative of every positive pair, as TensorFlow Addons mines it: the closest negative
    farther than the positive (d_an > d_ap), or, where there is none, the farthest negative.

    Anchor a's pairs go to positions offsets[a]:offsets[a + 1] of ``positives`` and ``negatives``, its positives in
    increasing order; the negative is -1 where the anchor has no negative at all.
    """
    for a in range(d.shape[0]):
        anchor_positives, anchor_negatives = _anchor_candidates(classes, self_offset, a)
        span = slice(offsets[a], offsets[a + 1])
        positives[span] = anchor_positives
        if anchor_negatives.size == 0:
            negatives[span] = -1
            continue
        d_ap, d_an = d[a, anchor_positives], d[a, anchor_negatives]
        order = np.argsort(d_an, kind="stable")  # equal distances stay in index order
        neg_sorted = d_an[order]
        first_farther = np.searchsorted(neg_sorted, d_ap, side="right")
        farthest = np.searchsorted(neg_sorted, neg_sorted[-1], side="left")  # lowest index among the farthest
        negatives[span] = anchor_negatives[order[np.where(first_farther < neg_sorted.size, first_farther, farthest)]]


def _extreme(values, candidates, largest, below=np.inf, above=-np.inf):
    """The candidate with the largest (smallest) value strictly inside (above, below), lowest index on ties;
    -1 if none."""
    inside = (values > above) & (values < below)
    if not inside.any():
        return -1
    kept = np.where(inside, values, -np.inf if largest else np.inf)
    return candidates[np.argmax(kept) if largest else np.argmin(kept)]


def select_per_anchor(d, classes, self_offset, positive_mode, negative_mode):
    """One positive and one negative per anchor (-1 where there is none).

    Modes: 0 the hardest (farthest positive, closest negative), 1 the easiest (closest positive, farthest
    negative), 2 semi-hard: the closest negative farther than the chosen positive, or the farthest positive
    closer than the chosen negative (the other side is chosen first; both cannot be semi-hard).
    """
    n_anchors = d.shape[0]
    chosen_positive, chosen_negative = np.full(n_anchors, -1), np.full(n_anchors, -1)
    for a in range(n_anchors):
        positives, negatives = _anchor_candidates(classes, self_offset, a)
        d_ap, d_an = d[a, positives], d[a, negatives]
        p = n = -1
        if positive_mode != 2:
            p = _extreme(d_ap, positives, largest=positive_mode == 0)
        if negative_mode != 2:
            n = _extreme(d_an, negatives, largest=negative_mode == 1)
        elif p >= 0:
            n = _extreme(d_an, negatives, largest=False, above=d[a, p])
        if positive_mode == 2 and n >= 0:
            p = _extreme(d_ap, positives, largest=True, below=d[a, n])
        chosen_positive[a], chosen_negative[a] = p, n
    return chosen_positive, chosen_negative
