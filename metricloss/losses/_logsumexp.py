"""The row-wise log-sum-exp that the losses on rows of logits share (multi-similarity, circle, NT-Xent, and through
:func:`softmax_cross_entropy_rows` the N-pair, SupCon and multiple-negatives ranking losses): stable, over a subset
of each row's entries (the others −inf), optionally with an extra logit 0 (log(1 + Σ e^z), the "1 +" of
multi-similarity and of a softplus), and with its cotangent, the softmax, written over the logits.

A loss of this kind builds its logits from the similarity matrix, calls :func:`logsumexp_rows` once per set of
entries (positives, negatives), combines the rows' values, and scales the softmax weights into the cotangent
∂L/∂S; one pullback of the batch does the rest.
"""

import numpy as np


def logsumexp_rows(z, *, add_one=False):
    """Row-wise LSE_i = log Σ_j e^{z_ij}, or with ``add_one`` log(1 + Σ_j e^{z_ij}), as the pair of float64 arrays
    (top, rest) with LSE_i = top_i + log1p(rest_i); overwrites ``z`` with the softmax weights
    ∂LSE_i/∂z_ij = e^{z_ij − LSE_i}.

    Entries of z that are −inf are not in the sum (their weight is 0): a caller sums over a subset of each row
    (an anchor's positives, its negatives) by setting the rest to −inf (:func:`masked`). top_i is the row's largest
    exponent (the extra 0 counts as one with ``add_one``: top_i >= 0), rest_i the sum of e^{v − top_i} over every
    other exponent v. So no exponential exceeds 1 (nothing overflows, whatever the logits' size), and the split
    keeps a small LSE's digits: with ``add_one`` and every z_ij < 0, LSE_i = log1p(Σ e^{z_ij}) exactly as written,
    not log(1 + tiny) rounded to 0; a caller subtracting a target logit subtracts it from top_i, not from LSE_i
    (the N-pair loss). A row of −inf has top −inf and rest 0 (the log of an empty sum, −inf; weights 0), or with
    ``add_one`` top 0 and rest 0 (log 1 = 0).

    The weights, w_ij = e^{z_ij − top_i} / (1 + rest_i), sum over the row to 1 minus the extra logit's share
    (e^{−top_i} / (1 + rest_i) with ``add_one``); those below the dtype's smallest normal number are 0
    (:func:`flush_subnormal`). Memory: z itself, plus a boolean B×R temporary. No masked reduction or ufunc
    (``np.max(..., where=)``, ``np.exp(..., where=)``) runs over the matrix: those were 10-50 times slower than these
    plain passes. Trusts its inputs: z finite or −inf.
    """
    n = z.shape[0]
    rows = np.arange(n)
    at = np.argmax(z, axis=1)  # the first maximum of each row (0 for a row of −inf)
    top = z[rows, at].astype(np.float64)
    has = top > -np.inf  # rows with an entry
    # The exponent taken out of the row: its top entry, or the extra 0 when that is as large (add_one).
    from_entry = has & (top > 0) if add_one else has
    shift = np.where(from_entry, top, 0.0)
    z -= shift.astype(z.dtype)[:, None]  # <= 0 on the row's entries, exactly 0 at its top; −inf stays −inf
    np.exp(z, out=z)
    top_rows, top_at = rows[from_entry], at[from_entry]
    z[top_rows, top_at] = 0
    rest = z.sum(axis=1, dtype=np.float64)  # the other entries' e^{z − top}
    z[top_rows, top_at] = 1
    if add_one:  # the extra logit: e^{0 − top} beside a top entry; else it is the top (rest holds every entry)
        rest += np.exp(-shift, where=from_entry, out=np.zeros(n))
        top = shift
    z *= (1 / (1 + rest)).astype(z.dtype)[:, None]
    np.copyto(z, 0, where=z < np.finfo(z.dtype).tiny)  # the weights are >= 0: flush_subnormal's one side
    return top, rest


def softmax_cross_entropy_rows(logits, target_rows, target_cols, target_weights):
    """The cross-entropy of each row of ``logits`` z against sparse targets t, ℓ_i = −Σ_j t_ij log softmax(z_i)_j
    (float64), with its cotangent ∂ℓ_i/∂z_ij = softmax(z_i)_j − t_ij written over ``logits``.

    t is ``target_weights[k]`` at (target_rows[k], target_cols[k]), no entry twice, 0 elsewhere; each row's weights
    sum to 1 (a row without targets gets ℓ_i = log1p(r_i) below and the cotangent softmax(z_i): callers drop it).
    Entries −inf are left out of their row's softmax (SupCon's anchor itself); no target may be one. Trusts its
    inputs: every row with a target has finite entries only there and at −inf.

    Stable form, from the shared row-wise log-sum-exp: with m_i = max_j z_ij and r_i = Σ_{j ≠ top} exp(z_ij − m_i)
    (LSE_i = m_i + log1p(r_i)),
        ℓ_i = log1p(r_i) + Σ_j t_ij (m_i − z_ij),
    two terms >= 0: nothing overflows, nothing cancels, and a tiny loss keeps its digits. The cotangent at a target
    entry, (e_ij − t_ij(1 + r_i)) / (1 + r_i) with e_ij = exp(z_ij − m_i), is computed in float64 as
    ((e_ij − t_ij) − t_ij r_i) / (1 + r_i): exactly −r_i / (1 + r_i) where the target is the maximum.
    """
    n = logits.shape[0]
    at_targets = logits[target_rows, target_cols].astype(np.float64)
    top, rest = logsumexp_rows(logits)  # logits now hold softmax(z)
    below_max = top[target_rows] - at_targets  # m − z at the targets, >= 0 (exact: two floats of one dtype)
    losses = np.bincount(target_rows, weights=target_weights * below_max, minlength=n).astype(np.float64)
    losses += np.log1p(rest)
    rest_at = rest[target_rows]
    logits[target_rows, target_cols] = ((np.exp(-below_max) - target_weights) - target_weights * rest_at) / (
        1 + rest_at
    )
    return losses


def masked(z, mask):
    """``z`` with −inf outside ``mask`` (in place): the entries :func:`logsumexp_rows` then leaves out."""
    np.copyto(z, -np.inf, where=~mask)
    return z


def flush_subnormal(a):
    """Set the entries of ``a`` below its dtype's smallest normal number in magnitude to 0, in place.

    jax and TensorFlow run their host callbacks with flush-to-zero, where an exponential or product that would be
    subnormal is 0; flushed here, a loss's weights and cotangents are bitwise the same in either mode (and a
    weight of e^-100 in float32, 4e-44, carries no digits a gradient could use)."""
    tiny = np.finfo(a.dtype).tiny
    np.copyto(a, 0, where=(a < tiny) & (a > -tiny))
