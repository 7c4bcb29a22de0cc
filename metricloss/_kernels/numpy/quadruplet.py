"""The quadruplet loss's kernel in NumPy: its second term over every positive pair against every negative pair, by
counts and sums, never the quadruplets.
"""

import numpy as np


def quadruplet_pairs(d, classes, margin2, out, divide):
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
    ref_class, _, class_order, class_starts = classes
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
