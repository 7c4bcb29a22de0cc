"""WARP as its paper writes it (Weston, Bengio & Usunier 2011): for each query and each of its positive items, draw
the query's negatives until one violates the margin, estimate the positive's rank from the number of draws, and pay
that violator's hinge weighted by L(rank); the gradient term by term.

The draws follow metricloss's documented sampling scheme (``metricloss._kernels.numpy.warp``),
re-derived here from its text in plain Python integers: one seed per (query, positive) pair, then a Fisher–Yates
shuffle of the items made step by step, each step's swap position hashed from the seed and the step.
"""

import math

import numpy as np

from ._common import reduction_weight, rows, similarity


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser, on a Python int < 2³²."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


def _swap_position(seed, s, n_items):
    """Step s's Fisher–Yates position r_s = s + ⌊u_s·(N − s)⌋, with u_s = (a·2²¹ + ⌊b/2¹¹⌋)·2⁻⁵³ ∈ [0, 1) hashed
    from the pair's seed and the step: a = fmix32((seed mod 2³² + (s + 1)·0x9E3779B9) mod 2³²),
    b = fmix32((⌊seed/2³²⌋ + (s + 1)·0x85EBCA77) mod 2³²)."""
    a = _fmix32((seed % 2**32 + (s + 1) * 0x9E3779B9) % 2**32)
    b = _fmix32((seed // 2**32 + (s + 1) * 0x85EBCA77) % 2**32)
    u = (a * 2**21 + b // 2**11) * 2.0**-53  # 53 random bits: exact in float64
    return s + min(math.floor(u * (n_items - s)), n_items - s - 1)


def _draw_order(n_items, seed):
    """The items in the order a pair draws them: a Fisher–Yates shuffle made as it goes (step s swaps positions s
    and r_s, then yields the item at s), or, with no seed (``sampling="index"``), increasing item index."""
    order = list(range(n_items))
    for s in range(n_items):
        if seed is not None:
            r = _swap_position(seed, s, n_items)
            order[s], order[r] = order[r], order[s]
        yield order[s]


def _rank_weight(k, weighting):
    """L(k): the paper's L(k) = Σ_{j=1}^{k} 1/j (its α_j = 1/j), or LightFM's ln max(1, k). L(0) = 0."""
    if weighting == "harmonic":
        return sum(1.0 / j for j in range(1, k + 1))
    return math.log(max(1, k))


def _warp(score, relevance, margin, sampling, max_trials, weighting, reduction, rng):
    """The WARP loss's value on the scores ``score(q, j)`` → (s_qj, add_slope), add_slope(c) adding c·∂s_qj/∂(inputs)
    into the gradients; accumulates the gradient through the add_slopes."""
    relevance = np.asarray(relevance, dtype=bool)
    n_queries, n_items = relevance.shape
    pairs = [(q, p) for q in range(n_queries) for p in range(n_items) if relevance[q, p]]  # row-major order
    if sampling == "random":  # one seed per pair, from the caller's Generator, in the pairs' order
        seeds = [int(seed) for seed in np.random.default_rng(rng).integers(0, 2**63, size=len(pairs), dtype=np.int64)]
    terms = []  # per pair: (ℓ_qp, [(∂ℓ_qp/∂s, add_slope of that s), ...])
    for k, (q, p) in enumerate(pairs):
        negatives = [j for j in range(n_items) if not relevance[q, j]]  # the items that are not q's positives
        n = len(negatives)  # n_q
        s_p, add_slope_p = score(q, p)  # s⁺ = s_qp
        term, slopes = 0.0, []  # a pair without a violator contributes 0
        if sampling == "exact":  # the rank is the number r of violators; ℓ = L(r)/r · Σ_violators z
            violators = []
            for j in negatives:
                s_j, add_slope_j = score(q, j)
                z = margin - s_p + s_j  # z_qj = m − s⁺ + s_qj: j violates iff z > 0
                if z > 0:
                    violators.append((z, add_slope_j))
            r = len(violators)
            alpha = _rank_weight(r, weighting) / r if r else 0.0  # L(r)/r, the weight of each violator's hinge
            for z, add_slope_j in violators:
                term += alpha * z  # ℓ += L(r)/r · z_qj
                slopes.append((-alpha, add_slope_p))  # ∂(L(r)/r · z_qj)/∂s⁺ = −L(r)/r
                slopes.append((alpha, add_slope_j))  # ∂(L(r)/r · z_qj)/∂s_qj = +L(r)/r
        else:  # draw negatives until one violates: T trials, the rank estimate ⌊n_q/T⌋
            limit = n if max_trials is None else min(max_trials, n)
            trials = 0  # T
            for j in _draw_order(n_items, seeds[k] if sampling == "random" else None):
                if trials == limit:  # max_trials draws (or every negative) without a violator
                    break
                if relevance[q, j]:  # a positive is passed over: not a trial
                    continue
                trials += 1
                s_j, add_slope_j = score(q, j)
                z = margin - s_p + s_j  # z_qj = m − s⁺ + s_qj
                if z > 0:  # the first violator v = j
                    rank = n // trials  # ⌊n_q/T⌋ >= 1, the paper's ⌊(Y − 1)/N⌋
                    weight = _rank_weight(rank, weighting)  # L(rank), held constant (piecewise constant in s)
                    term = weight * z  # ℓ = L(rank) · (m − s⁺ + s_qv)
                    slopes = [(-weight, add_slope_p), (weight, add_slope_j)]  # ∂ℓ/∂s⁺ = −L, ∂ℓ/∂s_qv = +L
                    break
        terms.append((term, slopes))

    w = reduction_weight([term for term, _ in terms], reduction)  # ρ over the (query, positive) pairs
    value = 0.0
    for term, slopes in terms:
        value += w * term
        for dterm_ds, add_slope in slopes:
            add_slope(w * dterm_ds)  # ∂L/∂(inputs) += w · ∂ℓ/∂s · ∂s/∂(inputs)
    return float(value)


def warp_loss(
    scores,
    relevance,
    *,
    margin=1.0,
    sampling="random",
    max_trials=None,
    weighting="harmonic",
    reduction="sum",
    rng=None,
):
    r"""The WARP loss of Weston, Bengio & Usunier (2011, WSABIE) on a score matrix, as loops over the queries, their
    positives and the draws.

    .. math::

        \ell_{qp} = L\!\left(\left\lfloor \frac{n_q}{T_{qp}} \right\rfloor\right)\,[m - s_{qp} + s_{qv}]_+,
        \qquad L(k) = \sum_{j=1}^{k} \frac{1}{j},
        \qquad \mathcal{L} = \rho\big(\{\ell_{qp}\}_{q,\ p \in P_q}\big)

    The loops run over the queries q, their positives p in increasing order, and the draws: the query's items in
    the scheme's shuffled order (``"random"``, one seed per pair from ``rng``) or in index order (``"index"``), the
    positives passed over, until the T-th negative drawn, v, violates (z = m − s_qp + s_qv > 0; a tie does not) or
    ``max_trials`` negatives (default: all n_q of them) have passed; no violator → the pair contributes 0.
    ``"exact"`` loops over every negative instead: ℓ_qp = L(r)/r · Σ_violators z (0 if r = 0). The rank is held
    constant in the gradient: −L at s_qp and +L at s_qv (−L(r) and +L(r)/r each, exact), times the reduction's
    weight. No pair → (0.0, zeros).

    The textbook twin of :func:`metricloss.warp_loss`: same arguments but ``backend``, same result.
    """
    s = rows(scores)  # s_qj
    grad = np.zeros_like(s)

    def score(q, j):
        def add_slope(slope):
            grad[q, j] += slope  # ∂s_qj/∂s_qj = 1

        return s[q, j], add_slope

    value = _warp(score, relevance, margin, sampling, max_trials, weighting, reduction, rng)
    return value, grad


def warp_embedding_loss(
    queries,
    items,
    relevance,
    *,
    margin=1.0,
    sampling="random",
    max_trials=None,
    weighting="harmonic",
    reduction="sum",
    rng=None,
):
    r"""The WARP loss of Weston, Bengio & Usunier (2011, WSABIE) for the dot-product model s_qj = x_q · y_j, as
    loops over the queries, their positives and the draws.

    .. math::

        \ell_{qp} = L\!\left(\left\lfloor \frac{n_q}{T_{qp}} \right\rfloor\right)\,
        [m - x_q \cdot y_p + x_q \cdot y_v]_+

    The loops are :func:`metricloss.textbook.warp_loss`'s, each score x_q · y_j computed where the loops need it;
    the chain rule through s_qj = x_q · y_j (∂s_qj/∂x_q = y_j, ∂s_qj/∂y_j = x_q) turns each score's slope c into
    c·y_j on x_q and c·x_q on y_j: ∂ℓ/∂x_q = L·(y_v − y_p), ∂ℓ/∂y_p = −L·x_q, ∂ℓ/∂y_v = +L·x_q.

    The textbook twin of :func:`metricloss.warp_embedding_loss`: same arguments but ``backend``, same result.
    """
    x, y = rows(queries), rows(items)  # x_q, y_j
    grad_x, grad_y = np.zeros_like(x), np.zeros_like(y)

    def score(q, j):
        s_qj, ds_dx, ds_dy = similarity(x[q], y[j], "dot")  # s_qj = x_q · y_j; ∂s/∂x_q = y_j, ∂s/∂y_j = x_q

        def add_slope(slope):
            grad_x[q] += slope * ds_dx
            grad_y[j] += slope * ds_dy

        return s_qj, add_slope

    value = _warp(score, relevance, margin, sampling, max_trials, weighting, reduction, rng)
    return value, (grad_x, grad_y)
