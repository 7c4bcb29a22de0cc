"""Triplet losses. This module holds the loss on explicit (anchor, positive, negative) rows."""

import numpy as np

from ._reduce import REDUCTIONS, reduce_terms
from ._validation import (
    check_bool,
    check_embeddings,
    check_margin,
    check_option,
    check_same_shape,
    check_scalar,
)
from .distances import _lp_distance_rows
from .pairs import _hinge


def triplet_margin_loss(anchor, positive, negative, *, margin=1.0, p=2, eps=1e-6, swap=False, reduction="mean"):
    r"""Triplet margin loss on explicit rows: each anchor should be closer to its positive than to its negative
    by at least the margin.

    .. math::

        \ell_k = [m + d(a_k, p_k) - d(a_k, n_k)]_+, \qquad d(u, v) = \|u - v + \epsilon\|_p

    With ``swap=True`` (Balntas et al. 2016) the negative distance is min(d(a, n), d(p, n)). Gradient, where
    the hinge is active: ∂ℓ/∂d(a, p) = 1 and ∂ℓ/∂(the negative distance used) = −1, each pulled back through
    the row-wise p-norm, ∂‖u‖_p/∂u = sign(u)|u|^(p−1)/‖u‖_p^(p−1) (0 where ‖u‖_p = 0).

    Parameters
    ----------
    anchor, positive, negative : arrays of shape (N, F), float32 or float64
    margin : float >= 0, default 1.0
    p : float >= 1, default 2
        The norm's degree.
    eps : float >= 0, default 1e-6
        Added to every coordinate of the difference before the norm, as torch does; ``eps=0`` gives the exact
        distance.
    swap : bool, default False
        Use the distance from positive to negative where it is smaller (ties keep d(a, n)).
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"

    Returns
    -------
    value : float
    grad : tuple (grad_anchor, grad_positive, grad_negative), each of shape (N, F)

    Notes
    -----
    The defaults are ``torch.nn.TripletMarginLoss``'s, and the loss is identical to it for every p and ``swap``,
    except at exact ties: at the hinge's kink torch's gradient is the active one (metricloss's is 0), and where
    d(p, n) = d(a, n) under ``swap`` torch splits the gradient between the two (metricloss gives it all to
    d(a, n)). The default ε = 1e-6 is torch's; it biases the distance slightly and breaks its rotation
    invariance, so pass ``eps=0`` for the exact distance of Schroff et al. and Weinberger et al. FaceNet uses
    the squared distance; the online (batch) versions of this loss take ``distance="sqeuclidean"``.

    References
    ----------
    K. Weinberger, L. Saul. Distance Metric Learning for Large Margin Nearest Neighbor Classification. JMLR 2009.
    V. Balntas, E. Riba, D. Ponsa, K. Mikolajczyk. Learning local feature descriptors with triplets and shallow
    convolutional neural networks. BMVC 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import triplet_margin_loss
    >>> a, p, n = np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.5, 0.0]])
    >>> value, (g_a, g_p, g_n) = triplet_margin_loss(a, p, n, eps=0.0)
    >>> value  # [1 + 1 − 1.5]₊
    0.5
    >>> g_a, g_p, g_n  # ∂d(a,p)/∂a = (a − p)/d = (0, −1); ∂d(a,n)/∂a = (−1, 0)
    (array([[ 1., -1.]]), array([[0., 1.]]), array([[-1.,  0.]]))
    """
    anchor = check_embeddings(anchor, "anchor")
    positive = check_embeddings(positive, "positive")
    negative = check_embeddings(negative, "negative")
    check_same_shape(positive, "positive", anchor, "anchor")
    check_same_shape(negative, "negative", anchor, "anchor")
    check_margin(margin)
    p = check_scalar(p, "p", low=1.0, why=" (a norm's degree)")
    eps = check_scalar(eps, "eps", low=0.0)
    swap = check_bool(swap, "swap")
    check_option(reduction, "reduction", REDUCTIONS)

    dtype = np.result_type(anchor, positive, negative)
    a, pos, neg = (array.astype(dtype, copy=False) for array in (anchor, positive, negative))
    d_ap, pull_ap = _lp_distance_rows(a, pos, p, eps)
    d_an, pull_an = _lp_distance_rows(a, neg, p, eps)
    d_neg, use_swap = d_an, np.zeros(d_an.shape, dtype=bool)
    if swap:
        d_pn, pull_pn = _lp_distance_rows(pos, neg, p, eps)
        use_swap = d_pn < d_an
        d_neg = np.where(use_swap, d_pn, d_an)

    terms, active = _hinge(margin + d_ap - d_neg)
    value, g = reduce_terms(terms, active, reduction)
    # ∂L/∂d(a,p) = g,  ∂L/∂d(a,n) = −g where the swap is not taken,  ∂L/∂d(p,n) = −g where it is.
    g_a, g_p = pull_ap(g)
    g_a_from_an, g_n = pull_an(np.where(use_swap, 0, -g))
    g_a += g_a_from_an
    if swap:
        g_p_from_pn, g_n_from_pn = pull_pn(np.where(use_swap, -g, 0))
        g_p += g_p_from_pn
        g_n += g_n_from_pn
    return value, tuple(
        grad.astype(array.dtype, copy=False)
        for grad, array in zip((g_a, g_p, g_n), (anchor, positive, negative), strict=True)
    )
