"""Reference kernels in vectorised NumPy: the readable versions of what ``numba_kernels`` does with loops, and the
place where each kernel's contract is written down.

Shared conventions. ``d`` is a distance matrix between anchors (rows) and references (columns). Classes come as
the arrays :func:`metricloss._batch.class_index` builds: ``ref_class[j]`` is reference j's class number,
``anchor_class[a]`` anchor a's (-1 if no reference shares it), and ``class_order[class_starts[c]:class_starts[c +
1]]`` lists the references of class c in increasing order. Anchor a is reference a + ``self_offset`` and is not its
own candidate (0 within one batch, the chunk's start when the anchors are a chunk of the references, ``NO_SELF``
when anchors and references are different sets). Kernels trust their inputs.

A triplet (a, p, n) is active iff d_an < d_ap + m (compared in float64); its hinge value is (d_ap + m) − d_an.
Ties between candidates go to the lowest index.
"""

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # rows of differences materialised at once: 4M float64 = 32 MB


def _recompute_close_pairs(x, y, d2, sq_norm_x, sq_norm_y, ratio):
    """Overwrite d2[i, j] by the direct Σ_k (x_ik − y_jk)², accumulated in float64, where
    d2[i, j] <= ratio · (‖x_i‖² + ‖y_j‖²): there the GEMM form is mostly rounding (it can even be negative)."""
    rows, cols = np.nonzero(d2 <= ratio * (sq_norm_x[:, None] + sq_norm_y[None, :]))
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, rows.size, step):
        r, c = rows[start : start + step], cols[start : start + step]
        diff = x[r].astype(np.float64) - y[c]
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)


def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    """Turn the Gram matrix x @ y.T into squared distances (``root``: distances), in place.

    d²_ij = ‖x_i‖² + ‖y_j‖² − 2 gram_ij, whose absolute error is a few ulps of ‖x_i‖² + ‖y_j‖²; pairs with
    d²_ij <= ratio · (‖x_i‖² + ‖y_j‖²) are recomputed by direct differences, then √ if ``root``.
    """
    gram *= -2
    gram += sq_norm_x[:, None]
    gram += sq_norm_y[None, :]
    _recompute_close_pairs(x, y, gram, sq_norm_x, sq_norm_y, ratio)
    if root:
        np.sqrt(gram, out=gram)


def pair_scale(g, d, squared):
    """The per-pair scale of the Euclidean distance VJP, in place: g ← g / d, 0 where d = 0 (a branch, no
    epsilon). ``squared`` distances need none (their scale, 2g, is applied with the weight)."""
    if squared:
        return
    zero = d == 0
    np.divide(g, d, out=g, where=~zero)
    g[zero] = 0


def symmetrize(s):
    """s ← s + sᵀ, in place (for the VJP of distances within one set: both ends of a pair move)."""
    s += s.T.copy()


def anchor_candidates(ref_class, anchor_class, self_offset, a):
    """Anchor a's positive and negative reference indices, in increasing order (also used by
    :func:`metricloss.mining.mine_triplets`)."""
    same = ref_class == anchor_class[a]
    candidate = np.ones(len(ref_class), dtype=bool)
    if 0 <= a + self_offset < len(ref_class):
        candidate[a + self_offset] = False
    return np.flatnonzero(same & candidate), np.flatnonzero(~same & candidate)


def batch_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, semihard_only, out, divide
):
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
        positives, negatives = anchor_candidates(ref_class, anchor_class, self_offset, a)
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


def semihard_negatives(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, offsets, positives, negatives
):
    """FaceNet's semi-hard negative of every positive pair, as TensorFlow Addons mines it: the closest negative
    farther than the positive (d_an > d_ap), or, where there is none, the farthest negative.

    Anchor a's pairs go to positions offsets[a]:offsets[a + 1] of ``positives`` and ``negatives``, its positives in
    increasing order; the negative is -1 where the anchor has no negative at all.
    """
    for a in range(d.shape[0]):
        anchor_positives, anchor_negatives = anchor_candidates(ref_class, anchor_class, self_offset, a)
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


def select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode):
    """One positive and one negative per anchor (-1 where there is none).

    Modes: 0 the hardest (farthest positive, closest negative), 1 the easiest (closest positive, farthest
    negative), 2 semi-hard: the closest negative farther than the chosen positive, or the farthest positive
    closer than the chosen negative (the other side is chosen first; both cannot be semi-hard).
    """
    n_anchors = d.shape[0]
    chosen_positive, chosen_negative = np.full(n_anchors, -1), np.full(n_anchors, -1)
    for a in range(n_anchors):
        positives, negatives = anchor_candidates(ref_class, anchor_class, self_offset, a)
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


def scatter_add_rows(out, index, values):
    """out[index[k]] += values[k] for every k, repeated indices accumulating (in order)."""
    np.add.at(out, index, values)


_PAIR_CHUNK_ELEMENTS = 1 << 16  # entries of d per block of rows in the pair kernels: temporaries stay ≪ B²


def contrastive_pairs(d, ref_class, anchor_class, self_offset, margin, pos_margin, form, out, divide):
    """Every pair (a, j) of anchor and candidate reference, each h = [d − m⁺]₊ if same class (similar) else
    [m − d]₊ (dissimilar), its term ℓ = ½h² (``form`` 0, Hadsell), h² (1) or h (2), computed in float64.

    Writes every element of ``out`` (the shape of d; it may be d itself: each block of rows is read before it is
    written) with the unweighted cotangent ∂ℓ/∂d = ±∂ℓ/∂h (+ similar, − dissimilar; 0 for the anchor's own column
    and wherever ℓ = 0); with ``divide``, that over d (0 where d = 0), the Euclidean VJP's scale. Returns
    per anchor, in columns (similar, dissimilar): the sums of the terms, the number of terms > 0 and the number
    of pairs. Works on blocks of rows, so its temporaries are a few blocks, not B×R arrays.
    """
    n_anchors, n_refs = d.shape
    values = np.zeros((n_anchors, 2))
    n_active = np.zeros((n_anchors, 2), dtype=np.int64)
    n_pairs = np.zeros((n_anchors, 2), dtype=np.int64)
    step = max(1, _PAIR_CHUNK_ELEMENTS // n_refs)
    for start in range(0, n_anchors, step):
        rows = np.arange(start, min(start + step, n_anchors))
        block = d[rows].astype(np.float64)
        similar = ref_class[None, :] == anchor_class[rows, None]
        candidate = np.ones(block.shape, dtype=bool)
        own = rows + self_offset
        inside = (own >= 0) & (own < n_refs)
        candidate[np.flatnonzero(inside), own[inside]] = False
        h = np.maximum(np.where(similar, block - pos_margin, margin - block), 0.0)
        term, dterm_dh = {0: (0.5 * h * h, h), 1: (h * h, 2 * h), 2: (h, np.ones_like(h))}[form]
        live = candidate & (term > 0)
        g = np.where(live, np.where(similar, dterm_dh, -dterm_dh), 0.0)
        for column, kind in enumerate((similar, ~similar)):
            values[rows, column] = np.sum(np.where(live & kind, term, 0.0), axis=1)
            n_active[rows, column] = np.count_nonzero(live & kind, axis=1)
            n_pairs[rows, column] = np.count_nonzero(candidate & kind, axis=1)
        if divide:
            g = np.divide(g, block, out=np.zeros_like(g), where=block > 0)
        out[rows] = g
    return values, n_active, n_pairs


def scale_same_class(out, ref_class, anchor_class, class_order, class_starts, factor):
    """out[a, j] *= factor for every pair of the same class (O(B·K) for classes of K references)."""
    for c in range(class_starts.size - 1):
        anchors = np.flatnonzero(anchor_class == c)
        out[np.ix_(anchors, class_order[class_starts[c] : class_starts[c + 1]])] *= factor
