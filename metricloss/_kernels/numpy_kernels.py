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


def soft_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, smallest, out, divide
):
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
        positives, negatives = anchor_candidates(ref_class, anchor_class, self_offset, a)
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


def batch_all_symmetric(
    d, ref_class, anchor_class, class_order, class_starts, margin, semihard_only, out, divide, gram=None
):
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
    totals = batch_all_triplets(
        d, ref_class, anchor_class, class_order, class_starts, 0, margin, semihard_only, out, divide
    )
    symmetrize(out)
    return totals


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


def scatter_add_entries(out, rows, cols, values):
    """out[rows[k], cols[k]] += values[k] for every k, repeated entries accumulating (in order)."""
    np.add.at(out, (rows, cols), values)


def pull_distance_pairs(x, y, rows, cols, g, squared, grad_x, grad_y):
    """The VJP of a cotangent g[k] on the distance between x[rows[k]] and y[cols[k]], pair by pair: with
    u = x_i − y_j, ∂‖u‖/∂x_i = u/‖u‖ (0 where u = 0) and ∂‖u‖²/∂x_i = 2u; adds g[k] times that to grad_x[rows[k]]
    and subtracts it from grad_y[cols[k]] (which may be grad_x). O(K·F) time; the Numba twin keeps no K×F
    temporary. The norm is computed on u scaled by its largest |entry|, so that it neither over- nor underflows."""
    u = x[rows].astype(np.float64) - y[cols].astype(np.float64)
    if squared:
        terms = 2 * g[:, None] * u
    else:
        largest = np.max(np.abs(u), axis=1, keepdims=True)
        ratio = np.divide(u, largest, out=np.zeros_like(u), where=largest > 0)
        norm = np.sqrt(np.einsum("ij,ij->i", ratio, ratio))[:, None]
        terms = g[:, None] * np.divide(ratio, norm, out=np.zeros_like(u), where=norm > 0)
    np.add.at(grad_x, rows, terms)
    np.add.at(grad_y, cols, -terms)


_PAIR_CHUNK_ELEMENTS = 1 << 16  # entries of d per block of rows in the pair kernels: temporaries stay ≪ B²


def _row_blocks(n_anchors, n_refs):
    """The pair kernels' blocks of anchor rows (index arrays) of about _PAIR_CHUNK_ELEMENTS entries each."""
    step = max(1, _PAIR_CHUNK_ELEMENTS // n_refs)
    for start in range(0, n_anchors, step):
        yield np.arange(start, min(start + step, n_anchors))


def _own_entries(rows, self_offset, n_refs):
    """(block row, column) of each anchor's own column, rows + self_offset, where it lies inside the matrix."""
    own = rows + self_offset
    inside = (own >= 0) & (own < n_refs)
    return np.flatnonzero(inside), own[inside]


def contrastive_pairs(d, ref_class, anchor_class, self_offset, margin, pos_margin, form, out, divide):
    """Every pair (a, j) of anchor and candidate reference, each h = [d − m⁺]₊ if same class (similar) else
    [m − d]₊ (dissimilar), its term ℓ = ½h² (``form`` 0, Hadsell), h² (1) or h (2), computed in float64.

    Writes every element of ``out`` (the shape of d; it may be d itself: each block of rows is read before it is
    written) with the unweighted cotangent ∂ℓ/∂d = ±∂ℓ/∂h (+ similar, − dissimilar; 0 for the anchor's own column
    and wherever ℓ = 0); with ``divide``, that over d (0 where d = 0), the Euclidean VJP's scale. Returns
    per anchor, in columns (similar, dissimilar): the sums of the terms, the number of terms > 0 and the number
    of pairs. Works on blocks of rows, so its temporaries are a few blocks, not B×R arrays.
    """
    # Every form as ℓ = (c₂h + c₁)h, ∂ℓ/∂h = 2c₂h + c₁: Hadsell (c₁, c₂) = (0, ½), squared (0, 1), linear (1, 0).
    c1 = 1.0 if form == 2 else 0.0
    c2 = 0.5 if form == 0 else (1.0 if form == 1 else 0.0)
    n_anchors, n_refs = d.shape
    values = np.zeros((n_anchors, 2))
    n_active = np.zeros((n_anchors, 2), dtype=np.int64)
    n_pairs = np.zeros((n_anchors, 2), dtype=np.int64)
    for rows in _row_blocks(n_anchors, n_refs):
        block = d[rows].astype(np.float64)
        similar = ref_class[None, :] == anchor_class[rows, None]
        candidate = np.ones(block.shape, dtype=bool)
        candidate[_own_entries(rows, self_offset, n_refs)] = False
        h = np.maximum(np.where(similar, block - pos_margin, margin - block), 0.0)
        term, dterm_dh = (c2 * h + c1) * h, 2 * c2 * h + c1
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


def _logsumexp_rows(exponents):
    """log Σ_j e^{exponents[i, j]} per row in float64, shifted by the row's largest exponent; −inf for a row of
    −inf (an empty sum)."""
    top = exponents.max(axis=1)
    finite = np.isfinite(top)
    shift = np.where(finite, top, 0.0)
    total = np.exp(exponents - shift[:, None]).sum(axis=1)
    return np.where(finite, shift + np.log(np.where(finite, total, 1.0)), -np.inf)


def negative_softmax(d, ref_class, anchor_class, margin, out, divide):
    """λ_a = log Σ_{n ∈ N(a)} e^{m − d_an} for every anchor a, N(a) its negatives (references of another class;
    never the anchor itself), in float64, shifted by the row's largest exponent m − min_n d_an (no overflow
    whatever m and d); −inf where the anchor has no negative (the log of an empty sum). Returns λ.

    Writes the softmax weights e^{m − d_an − λ_a} of each anchor's negatives over their entries of ``out`` (with
    ``divide``, over d_an, 0 where d_an = 0) and leaves its other entries as they are: out may be d, whose
    positive distances then stay readable.
    """
    lse = np.empty(d.shape[0])
    for rows in _row_blocks(*d.shape):
        block = d[rows].astype(np.float64)
        negative = ref_class[None, :] != anchor_class[rows, None]
        exponents = np.where(negative, margin - block, -np.inf)
        lse[rows] = _logsumexp_rows(exponents)
        weights = np.exp(exponents - np.where(np.isfinite(lse[rows]), lse[rows], 0.0)[:, None])
        if divide:
            weights = np.divide(weights, block, out=np.zeros_like(weights), where=block > 0)
        out[rows] = np.where(negative, weights, out[rows])
    return lse


def _positive_mask(ref_class, anchor_class, rows, self_offset, n_refs):
    """positive[r, j]: reference j is of anchor rows[r]'s class and is not the anchor itself."""
    positive = ref_class[None, :] == anchor_class[rows, None]
    positive[_own_entries(rows, self_offset, n_refs)] = False
    return positive


def _lifted_hinge(d_block, row_lse, col_lse, positive):
    """[J]₊ on the positive entries (0 elsewhere), J_aj = log(e^{row_lse[a]} + e^{col_lse[j]}) + d_aj, and
    σ_aj = e^{row_lse[a]} / (e^{row_lse[a]} + e^{col_lse[j]}) where [J]₊ > 0 (0 elsewhere)."""
    pair_lse = np.logaddexp(row_lse[:, None], col_lse[None, :])
    hinge = np.where(positive, np.maximum(pair_lse + d_block, 0.0), 0.0)
    live = hinge > 0  # there pair_lse is finite
    share = np.exp(np.where(live, row_lse[:, None] - np.where(live, pair_lse, 0.0), -np.inf))
    return hinge, share


def lifted_pairs(d, ref_class, anchor_class, class_order, class_starts, self_offset, row_lse, col_lse):
    """The lifted structure terms of every positive pair (a, p), p a reference of a's class other than a:
    J_ap = log(e^{row_lse[a]} + e^{col_lse[p]}) + d_ap, with row_lse = log Σ over a's negatives and col_lse =
    log Σ over p's (−inf where empty: then J = −inf when both are, and the pair costs nothing).

    Returns per anchor, in float64: Σ_p ½[J_ap]₊², the number of positive pairs, the number with J > 0, and
    the coefficient α_a = Σ_p [J_ap]₊ σ_ap with σ_ap = e^{row_lse[a]} / (e^{row_lse[a]} + e^{col_lse[p]}), the
    share of a's negatives in the pair's sum (what :func:`lifted_cotangent` needs).
    """
    n_anchors, n_refs = d.shape
    values, coef = np.zeros(n_anchors), np.zeros(n_anchors)
    n_pairs, n_active = np.zeros(n_anchors, np.int64), np.zeros(n_anchors, np.int64)
    for rows in _row_blocks(n_anchors, n_refs):
        positive = _positive_mask(ref_class, anchor_class, rows, self_offset, n_refs)
        hinge, share = _lifted_hinge(d[rows].astype(np.float64), row_lse[rows], col_lse, positive)
        values[rows] = 0.5 * np.sum(hinge * hinge, axis=1)
        n_pairs[rows] = np.count_nonzero(positive, axis=1)
        n_active[rows] = np.count_nonzero(hinge > 0, axis=1)
        coef[rows] = np.sum(hinge * share, axis=1)
    return values, n_pairs, n_active, coef


def lifted_cotangent(
    d,
    ref_class,
    anchor_class,
    class_order,
    class_starts,
    self_offset,
    row_lse,
    col_lse,
    row_coef,
    col_coef,
    col_weights,
    out,
    divide,
):
    """Turns ``out``, which holds the softmax weights of every anchor's negatives (:func:`negative_softmax`, with
    the same ``divide``), into the lifted structure cotangent; every element of out is written:

    * positive pair (a, p): [J_ap]₊ (J as in :func:`lifted_pairs`, d_ap read from d: out may be d, whose positive
      entries :func:`negative_softmax` left alone);
    * negative (a, n): −row_coef[a] · out[a, n] − col_coef[n] · col_weights[n, a], col_weights the references'
      softmax weights (:func:`negative_softmax` on dᵀ), read only where col_coef[n] != 0 (within one batch,
      where col_coef is 0, any array);
    * the anchor's own column: 0;

    positive entries with ``divide`` over d (0 where d = 0), the Euclidean VJP's scale.
    """
    n_anchors, n_refs = d.shape
    for rows in _row_blocks(n_anchors, n_refs):
        block = d[rows].astype(np.float64)
        positive = _positive_mask(ref_class, anchor_class, rows, self_offset, n_refs)
        negative = ref_class[None, :] != anchor_class[rows, None]
        hinge, _ = _lifted_hinge(block, row_lse[rows], col_lse, positive)
        if divide:
            hinge = np.divide(hinge, block, out=np.zeros_like(hinge), where=block > 0)
        g = -row_coef[rows, None] * np.where(negative, out[rows], 0.0)  # out's other entries may be anything
        if np.any(col_coef):
            g -= np.where(col_coef[None, :] != 0, col_coef[None, :] * col_weights[:, rows].T, 0.0)
        out[rows] = np.where(negative, g, hinge)


def generalized_lifted_rows(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, keep_incomplete, out, divide
):
    """Hermans et al.'s generalized lifted structure term of every anchor a,

        t_a = [log Σ_{p ∈ P(a)} e^{d_ap} + log Σ_{n ∈ N(a)} e^{m − d_an}]₊,

    each log-sum-exp shifted by its largest exponent, in float64. An empty sum's log is −inf (so t_a = 0), or 0
    with ``keep_incomplete`` (pytorch-metric-learning's convention).

    Writes every element of ``out`` (the shape of d; it may be d itself) with the unweighted cotangent
    ∂t_a/∂d: where t_a > 0, the softmax weight e^{d_ap}/Σ on each positive and −e^{m − d_an}/Σ on each negative;
    0 elsewhere; with ``divide``, that over d (0 where d = 0). Returns the terms and whether each anchor has both
    a positive and a negative.
    """
    n_anchors, n_refs = d.shape
    terms, complete = np.zeros(n_anchors), np.zeros(n_anchors, dtype=bool)
    empty = 0.0 if keep_incomplete else -np.inf
    for rows in _row_blocks(n_anchors, n_refs):
        block = d[rows].astype(np.float64)
        positive = _positive_mask(ref_class, anchor_class, rows, self_offset, n_refs)
        negative = ref_class[None, :] != anchor_class[rows, None]
        pos_exponent = np.where(positive, block, -np.inf)
        neg_exponent = np.where(negative, margin - block, -np.inf)
        pos_lse, neg_lse = _logsumexp_rows(pos_exponent), _logsumexp_rows(neg_exponent)
        has_pos, has_neg = positive.any(axis=1), negative.any(axis=1)
        total = np.where(has_pos, pos_lse, empty) + np.where(has_neg, neg_lse, empty)
        terms[rows] = np.maximum(total, 0.0)
        complete[rows] = has_pos & has_neg
        live = (total > 0)[:, None]
        g = np.where(live & positive, np.exp(pos_exponent - np.where(has_pos, pos_lse, 0.0)[:, None]), 0.0)
        g -= np.where(live & negative, np.exp(neg_exponent - np.where(has_neg, neg_lse, 0.0)[:, None]), 0.0)
        if divide:
            g = np.divide(g, block, out=np.zeros_like(g), where=block > 0)
        out[rows] = g
    return terms, complete


# --- WARP (metricloss.losses.warp) ------------------------------------------------------------------------------
#
# Queries × items. The score of item j for query q is a[q, j] (a score matrix), or with ``dot`` the dot product
# Σ_f a[q, f]·b[j, f] of two embedding matrices, accumulated in float64 and computed only where it is needed.
# ``relevance`` is the boolean queries × items matrix. The pairs are the (query, positive) pairs in row-major
# order: query q's positive items, in increasing order, are positives[offsets[q]:offsets[q + 1]]. A negative j
# violates pair (q, p) iff its hinge z = (m − s_qp) + s_qj is > 0, in float64.
#
# The sampling scheme, identical in both backends and independent of the thread count. Pair k draws the N items
# in the order of a Fisher–Yates shuffle that it makes as it goes, skipping its query's positives: step s
# (s = 0, 1, ...) swaps positions s and r_s = s + ⌊u_s·(N − s)⌋ of the list of items (initially 0, 1, ..., N − 1),
# then takes the item at position s; a positive is passed over, a negative is a trial and is tested. So the trials
# are the query's negatives in a uniformly random order, without replacement, up to the first violator. u_s ∈ [0, 1)
# is a 53-bit counter-based hash of the pair's seed (seeds[k], from the caller's numpy Generator) and s:
#     a = fmix32((seed mod 2³² + (s + 1)·0x9E3779B9) mod 2³²),  b = fmix32((⌊seed / 2³²⌋ + (s + 1)·0x85EBCA77) mod 2³²),
#     u_s = (a·2²¹ + ⌊b / 2¹¹⌋) · 2⁻⁵³,
# fmix32 being MurmurHash3's 32-bit finaliser; u_s is exact in float64 and u_s·(N − s) is one correctly rounded
# product (below N − s, so the min(·, N − s − 1) kept for safety never acts), the same in NumPy, Numba and Python;
# the order is uniform up to a bias of (N − s)/2⁵³ per step. Without shuffling (``shuffle`` False) the items are
# taken in increasing index. The integer arithmetic stays below 2⁶³: nothing overflows, compiled or in plain Python.

_M32 = 0xFFFFFFFF
_TWO_TO_MINUS_53 = 2.0**-53


def _warp_mul32(x, c):
    """x·c mod 2³² for 0 <= x, c < 2³², without an intermediate >= 2⁶³ (c split into 16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _warp_fmix32(h):
    """MurmurHash3's 32-bit finaliser (elementwise on int64 arrays, or on a Python int)."""
    h = h ^ (h >> 16)
    h = _warp_mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _warp_mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _warp_draw(seed, s, n_items):
    """Step s's Fisher–Yates position r_s = s + ⌊u_s·(N − s)⌋ (see above), elementwise over seeds."""
    step = s + 1
    a = _warp_fmix32(((seed & _M32) + step * 0x9E3779B9) & _M32)
    b = _warp_fmix32(((seed >> 32) + step * 0x85EBCA77) & _M32)
    u = ((a << 21) | (b >> 11)) * _TWO_TO_MINUS_53  # 53 random bits: exact in float64, u < 1
    return s + np.minimum(np.floor(u * (n_items - s)), n_items - s - 1).astype(np.int64)


def _warp_score_row(a, b, dot, q):
    """Query q's scores of every item, in float64."""
    if dot:
        return b.astype(np.float64) @ a[q].astype(np.float64)
    return a[q].astype(np.float64)


def warp_violators(
    a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, violators, trials, hinges
):
    """For each (query, positive) pair, draw the query's negatives until one violates or ``max_trials`` have been
    drawn, in the shuffled order of the scheme above (``seeds``: one per pair) or in increasing item index.

    Writes, per pair k: violators[k] (the first violator's item index, -1 if none was found), trials[k] (the number
    of negatives drawn, the violator included) and hinges[k] (its z; 0 if none). The positives of one query draw in
    lockstep here: row i of ``order`` is positive i's list of items, shuffled as it goes.
    """
    n_queries, n_items = relevance.shape
    for q in range(n_queries):
        row = _warp_score_row(a, b, dot, q)
        pairs = np.arange(offsets[q], offsets[q + 1])
        limit = min(max_trials, n_items - pairs.size)
        slack = margin - row[positives[pairs]]  # z = slack + s⁻
        order = np.tile(np.arange(n_items), (pairs.size, 1))
        found, drawn, z = np.full(pairs.size, -1), np.zeros(pairs.size, dtype=np.int64), np.zeros(pairs.size)
        searching = np.arange(pairs.size) if limit > 0 else np.zeros(0, dtype=np.int64)
        for s in range(n_items):
            if searching.size == 0:
                break
            if shuffle:
                r = _warp_draw(seeds[pairs[searching]], s, n_items)
                at_s, at_r = order[searching, s].copy(), order[searching, r].copy()
                order[searching, s], order[searching, r] = at_r, at_s
            candidates = order[searching, s]
            negative = ~relevance[q, candidates]
            drawn[searching] += negative
            hinge = slack[searching] + row[candidates]
            hit = negative & (hinge > 0)
            found[searching[hit]], z[searching[hit]] = candidates[hit], hinge[hit]
            searching = searching[~hit & (drawn[searching] < limit)]
        violators[pairs], trials[pairs], hinges[pairs] = found, drawn, z


def warp_exact(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    """The exact (unsampled) ranks on a score matrix: per pair k, ranks[k] = the number r of violating negatives
    and hinge_sums[k] = Σ z over them (float64).

    Writes every element of ``out`` (float64, the shape of scores) with the unweighted cotangent of
    Σ_k L(r_k)/r_k · Σ_violators z: −L(r_k) at the pair's positive and +L(r_k)/r_k at each of its violators, summed
    over the query's pairs (0 where r = 0); ``weights[r]`` is L(r), for r = 0..n_items.
    """
    for q in range(scores.shape[0]):
        row = scores[q].astype(np.float64)
        pairs = slice(offsets[q], offsets[q + 1])
        z = (margin - row[positives[pairs]])[:, None] + row[None, :]
        violating = (z > 0) & ~relevance[q][None, :]
        r = np.count_nonzero(violating, axis=1)
        ranks[pairs], hinge_sums[pairs] = r, np.where(violating, z, 0.0).sum(axis=1)
        per_violator = np.divide(weights[r], r, out=np.zeros(r.size), where=r > 0)
        out[q] = per_violator @ violating
        out[q, positives[pairs]] -= weights[r]


def quadruplet_pairs(d, ref_class, class_order, class_starts, margin2, out, divide):
    """The second term of the quadruplet loss (Chen et al. 2017) within one batch: every positive pair {i, j}
    (i < j, of a class c) against every negative pair {l, k} (l < k, of two classes) with neither end in class c,
    each [d_ij − d_lk + margin2]₊, active iff d_lk < T_ij = d_ij + margin2 (compared in float64).

    Writes every element of ``out`` (the shape of d; it may be d itself) with an unweighted cotangent g whose
    symmetric part g + gᵀ is ∂(Σ terms)/∂d on each pair (the pullback adds gᵀ): a positive pair's count of
    active partners on its upper entry (i, j), 0 on (j, i). A negative pair's count of partners is
    G(d_lk) − H_a(d_lk) − H_b(d_lk), with G(x) = #{T > x} over all positive pairs and H_a(x) the part of those in
    l's class a (H_b: in k's class b); row l writes −(G − H_a) on (l, k), row k writes +H_b on (k, l), so that each
    row needs only its own class's thresholds. 0 on the diagonal. With ``divide``, g / d (0 where d = 0), the
    Euclidean VJP's scale. Returns the sum of the terms, the number of active terms and the number of terms.

    Counts and sums, never the quadruplets: a positive pair of class c has #{negative pairs below T} −
    #{negative pairs with an end in class c below T} partners, each count a binary search in sorted distances;
    the value is Σ_positive #partners·T − Σ_negative #partners·d = Σ g·d + margin2·Σ_positive #partners. O(B² log B)
    time, O(B²) memory, no B³ array.
    """
    n = d.shape[0]
    d = d.astype(np.float64)  # a copy: out may be d
    columns = np.arange(n)
    members = [class_order[class_starts[c] : class_starts[c + 1]] for c in range(class_starts.size - 1)]
    pairs = [np.triu_indices(m.size, 1) for m in members]  # members are in increasing order: i < j
    thresholds = [d[m[first], m[second]] + margin2 for m, (first, second) in zip(members, pairs, strict=True)]
    all_thresholds = np.sort(np.concatenate(thresholds))
    negatives = [d[m][(ref_class[None, :] != c) & (columns > m[:, None])] for c, m in enumerate(members)]
    neg_sorted = np.sort(np.concatenate(negatives))  # every negative pair once, from its lower end

    row_sums, n_active, n_terms = np.zeros(n), 0, 0
    for c, (m, (first, second), t) in enumerate(zip(members, pairs, thresholds, strict=True)):
        block, other = d[m], ref_class != c  # class c's rows
        # Positive pairs: the negative pairs below T, less those with an end in class c.
        touching = np.sort(block[:, other].ravel())
        count = np.searchsorted(neg_sorted, t, side="left") - np.searchsorted(touching, t, side="left")
        # Negative pairs: G = #{T > d} overall and H_c = #{T > d} in class c; −(G − H_c) above the diagonal, H_c below.
        above_all = all_thresholds.size - np.searchsorted(all_thresholds, block, side="right")
        above_own = t.size - np.searchsorted(np.sort(t), block, side="right")
        slope = np.where(other, np.where(columns > m[:, None], above_own - above_all, above_own), 0).astype(np.float64)
        slope[first, m[second]] = count
        # Σ_positive #partners·(d + m2) − Σ_negative #partners·d = Σ g·d + m2·#active, row by row (not by class).
        row_sums[m] = np.sum(slope * block, axis=1)
        n_active += int(count.sum())
        n_terms += count.size * (neg_sorted.size - touching.size)
        out[m] = np.divide(slope, block, out=np.zeros_like(slope), where=block > 0) if divide else slope
    return float(margin2 * n_active + np.sum(row_sums)), n_active, n_terms


def transposed(m):
    """mᵀ as a new C-contiguous array (the Numba kernel copies it tile by tile)."""
    return np.ascontiguousarray(m.T)
