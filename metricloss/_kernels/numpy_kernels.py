"""Reference kernels in vectorised NumPy: the readable versions of what ``numba_kernels`` does with loops, and the
place where each kernel's contract is written down.

Shared conventions. ``d`` is a distance matrix between anchors (rows) and references (columns); ``labels`` and
``ref_labels`` are their integer classes. Anchor a is reference a + ``self_offset`` and is not its own candidate
(0 within one batch, the chunk's start when the anchors are a chunk of the references); ``NO_SELF`` when
anchors and references are different sets. Kernels trust their inputs. Thresholds and sums are computed in float64:
a triplet (a, p, n) is active iff d_an < d_ap + m, its hinge value is (d_ap + m) − d_an. Ties between candidates
go to the lowest index.
"""

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # rows of differences materialised at once: 4M float64 = 32 MB


def recompute_close_pairs(x, y, d2, sq_norm_x, sq_norm_y, ratio):
    """Overwrite d2[i, j] by the direct Σ_k (x_ik − y_jk)² where d2[i, j] <= ratio · (‖x_i‖² + ‖y_j‖²).

    ``d2`` holds the GEMM form ‖x_i‖² + ‖y_j‖² − 2 x_i·y_j, whose absolute error is a few ulps of
    ‖x_i‖² + ‖y_j‖²: for pairs that are close relative to their norms it is mostly rounding (it can even be
    negative), so they are recomputed from differences, accumulated in float64. Updates ``d2`` in place.
    """
    rows, cols = np.nonzero(d2 <= ratio * (sq_norm_x[:, None] + sq_norm_y[None, :]))
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, rows.size, step):
        r, c = rows[start : start + step], cols[start : start + step]
        diff = x[r].astype(np.float64) - y[c]
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)


def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    """Turn the Gram matrix x @ y.T into squared distances (``root``: distances), in place.

    d²_ij = ‖x_i‖² + ‖y_j‖² − 2 gram_ij, then :func:`recompute_close_pairs`, then √ if ``root``.
    """
    gram *= -2
    gram += sq_norm_x[:, None]
    gram += sq_norm_y[None, :]
    recompute_close_pairs(x, y, gram, sq_norm_x, sq_norm_y, ratio)
    if root:
        np.sqrt(gram, out=gram)


def pair_scale(g, d, weight, squared):
    """Overwrite the cotangent g = ∂L/∂d by the per-pair scale S of the Euclidean distance VJP; return S·1.

    ``squared`` (d = ‖·‖²): S = 2 w g.  Otherwise (d = ‖·‖): S = w g / d, and 0 where d = 0 (by a branch).
    """
    if squared:
        g *= 2 * weight
    else:
        zero = d == 0
        np.divide(g, d, out=g, where=~zero)
        g[zero] = 0
        g *= weight
    return g.sum(axis=1, dtype=np.float64)


def _split(d, labels, ref_labels, self_offset, a):
    """Anchor a's positive and negative reference indices, in increasing order."""
    same = ref_labels == labels[a]
    candidate = np.ones(len(ref_labels), dtype=bool)
    if 0 <= a + self_offset < len(ref_labels):
        candidate[a + self_offset] = False
    return np.flatnonzero(same & candidate), np.flatnonzero(~same & candidate)


def batch_all_triplets(d, labels, ref_labels, self_offset, margin, semihard_only, g):
    """Every valid triplet (a, p, n) (``semihard_only``: those with d_an >= d_ap), each with [d_ap − d_an + m]₊.

    Adds to g (zeros on entry, the shape of d) the unweighted cotangent: g[a, p] += #active negatives of (a, p),
    g[a, n] −= #positives with which (a, n) is active. Returns per anchor the sum of the terms, the number of
    active terms and the number of valid triplets.

    Per anchor: sort the negatives' distances once; for each positive, a binary search gives the active
    negatives (d_ap <= d_an < d_ap + m for semi-hard) and prefix sums give their total, so the anchor costs
    O((P + N) log N) and the batch O(B² log B) time and O(B²) memory: no B³ array.
    """
    n_anchors = d.shape[0]
    sums, n_active, n_valid = np.zeros(n_anchors), np.zeros(n_anchors, np.int64), np.zeros(n_anchors, np.int64)
    for a in range(n_anchors):
        positives, negatives = _split(d, labels, ref_labels, self_offset, a)
        n_valid[a] = positives.size * negatives.size
        if n_valid[a] == 0:
            continue
        d_ap = d[a, positives].astype(np.float64)
        d_an = d[a, negatives].astype(np.float64)
        neg_sorted = np.sort(d_an, kind="stable")
        prefix = np.concatenate([[0.0], np.cumsum(neg_sorted)])
        thresholds = d_ap + margin
        hi = np.searchsorted(neg_sorted, thresholds, side="left")
        lo = np.searchsorted(neg_sorted, d_ap, side="left") if semihard_only else np.zeros_like(hi)
        count = np.maximum(hi - lo, 0)
        sums[a] = np.sum(count * thresholds - np.where(count > 0, prefix[hi] - prefix[lo], 0.0))
        n_active[a] = count.sum()
        g[a, positives] += count

        order = np.argsort(d_ap, kind="stable")
        pos_sorted, thresholds_sorted = d_ap[order], thresholds[order]
        first = np.searchsorted(thresholds_sorted, d_an, side="right")
        last = np.searchsorted(pos_sorted, d_an, side="right") if semihard_only else positives.size
        g[a, negatives] -= np.maximum(last - first, 0)
    return sums, n_active, n_valid


def _softplus_and_sigmoid(z):
    return np.logaddexp(0.0, z), np.exp(-np.logaddexp(0.0, -z))


def _add_triplet_terms(g, a, positives, negatives, thresholds, d_an, soft):
    """Terms (a, positives[k], negatives[k]) with thresholds d_ap + m; adds the unweighted cotangent to g.
    Returns (sum, number of terms, number of non-zero terms)."""
    if soft:
        values, slopes = _softplus_and_sigmoid(thresholds - d_an)
    else:
        slopes = (d_an < thresholds).astype(np.float64)
        values = np.where(slopes > 0, thresholds - d_an, 0.0)
    np.add.at(g[a], positives, slopes)
    np.subtract.at(g[a], negatives, slopes)
    return values.sum(), values.size, np.count_nonzero(values > 0)


def semihard_triplets(d, labels, ref_labels, self_offset, margin, soft, g):
    """FaceNet's semi-hard triplets, as TensorFlow Addons mines them: for every positive pair (a, p), the
    closest negative farther than the positive (d_an > d_ap), or, where there is none, the farthest negative.

    One term per positive pair that has a negative: [d_ap − d_an + m]₊ (``soft``: softplus(d_ap − d_an + m)).
    Adds the unweighted cotangent to g and returns per anchor (sum of terms, number of terms, non-zero terms).
    """
    n_anchors = d.shape[0]
    sums, n_terms, n_active = np.zeros(n_anchors), np.zeros(n_anchors, np.int64), np.zeros(n_anchors, np.int64)
    for a in range(n_anchors):
        positives, negatives = _split(d, labels, ref_labels, self_offset, a)
        if positives.size == 0 or negatives.size == 0:
            continue
        d_ap, d_an = d[a, positives], d[a, negatives]
        order = np.argsort(d_an, kind="stable")  # equal distances stay in index order
        neg_sorted = d_an[order]
        first_farther = np.searchsorted(neg_sorted, d_ap, side="right")
        farthest = np.searchsorted(neg_sorted, neg_sorted[-1], side="left")  # lowest index among the farthest
        chosen = negatives[order[np.where(first_farther < negatives.size, first_farther, farthest)]]
        thresholds = d_ap.astype(np.float64) + margin
        sums[a], n_terms[a], n_active[a] = _add_triplet_terms(
            g, a, positives, chosen, thresholds, d[a, chosen].astype(np.float64), soft
        )
    return sums, n_terms, n_active


def _extreme(values, candidates, largest, below=np.inf, above=-np.inf):
    """The candidate with the largest (smallest) value strictly inside (above, below), lowest index on ties;
    -1 if none."""
    inside = (values > above) & (values < below)
    if not inside.any():
        return -1
    kept = np.where(inside, values, -np.inf if largest else np.inf)
    return candidates[np.argmax(kept) if largest else np.argmin(kept)]


def select_per_anchor(d, labels, ref_labels, self_offset, positive_mode, negative_mode):
    """One positive and one negative per anchor (-1 where there is none).

    Modes: 0 the hardest (farthest positive, closest negative), 1 the easiest (closest positive, farthest
    negative), 2 semi-hard: the closest negative farther than the chosen positive, or the farthest positive
    closer than the chosen negative (the other side is chosen first; both cannot be semi-hard).
    """
    n_anchors = d.shape[0]
    chosen_positive, chosen_negative = np.full(n_anchors, -1), np.full(n_anchors, -1)
    for a in range(n_anchors):
        positives, negatives = _split(d, labels, ref_labels, self_offset, a)
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
