"""What every textbook loss shares: one distance (or similarity) between two rows with its two gradients, the
reduction's weight, and the batch's pairs of rows.

Everything here works on one pair of rows at a time, in float64, with plain NumPy on vectors: a textbook loss
loops over its pairs, triplets or tuples and calls these on each, so that every line of the loss is a line of
its paper's formula. Nothing here is fast, and nothing is shared with the fast losses: the textbook versions are
the independent oracle the fast ones are tested against.
"""

import numpy as np

from .._validation import check_option

REDUCTIONS = ("mean", "sum", "mean_nonzero")


def rows(array):
    """An array of rows (or of scores) as float64, the precision the textbook computes in."""
    return np.array(array, dtype=np.float64)


def distance(u, v, metric):
    """d(u, v) and its gradients (∂d/∂u, ∂d/∂v), for u the anchor (the SNR distance is not symmetric).

    ==============  =========================  ======================================================
    metric          d(u, v)                    ∂d/∂u
    ==============  =========================  ======================================================
    "euclidean"     ‖u − v‖                    (u − v)/d; 0 where d = 0 (the subgradient at 0)
    "sqeuclidean"   ‖u − v‖²                   2(u − v)
    "cosine"        1 − c, c = u·v/(‖u‖‖v‖)    −∂c/∂u = −(v/(‖u‖‖v‖) − c·u/‖u‖²); d = 1, ∂d = 0 for a zero row
    "dot"           −u·v                       −v
    "snr"           ‖ṽ − ũ‖²/‖ũ‖², x̃ = x − x̄   (2/‖ũ‖²)((1 − d)ũ − ṽ), centred; d = 1, ∂d = 0 for constant u
    ==============  =========================  ======================================================

    ∂d/∂v follows by the same rules (for "snr": 2(ṽ − ũ)/‖ũ‖², centred).
    """
    if metric == "euclidean":
        d = np.sqrt(np.sum((u - v) ** 2))
        if d == 0:
            return 0.0, np.zeros_like(u), np.zeros_like(v)
        return d, (u - v) / d, (v - u) / d
    if metric == "sqeuclidean":
        return np.sum((u - v) ** 2), 2 * (u - v), 2 * (v - u)
    if metric == "cosine":
        c, dc_du, dc_dv = similarity(u, v, "cosine")
        return 1.0 - c, -dc_du, -dc_dv
    if metric == "dot":
        return -(u @ v), -v, -u
    if metric == "snr":
        u_c, v_c = u - u.mean(), v - v.mean()  # the centred rows ũ, ṽ
        signal = u_c @ u_c  # ‖ũ‖², the anchor's variance times F
        if signal == 0:  # a constant anchor has no signal: d = 1 by convention, gradient 0
            return 1.0, np.zeros_like(u), np.zeros_like(v)
        d = np.sum((v_c - u_c) ** 2) / signal
        dd_du_c = (2 / signal) * ((1 - d) * u_c - v_c)
        dd_dv_c = (2 / signal) * (v_c - u_c)
        # x̃ = x − mean(x): the pullback through the centring subtracts the mean of the gradient
        return d, dd_du_c - dd_du_c.mean(), dd_dv_c - dd_dv_c.mean()
    raise ValueError(f"unknown distance {metric!r}")


def similarity(u, v, kind):
    """s(u, v) and its gradients (∂s/∂u, ∂s/∂v).

    "dot": s = u·v, ∂s/∂u = v. "cosine": s = c = u·v/(‖u‖‖v‖), ∂c/∂u = v/(‖u‖‖v‖) − c·u/‖u‖²; a zero row has
    no direction, so its cosine with anything is 0, with gradient 0.
    """
    if kind == "dot":
        return u @ v, v.copy(), u.copy()
    if kind == "cosine":
        norm_u, norm_v = np.sqrt(u @ u), np.sqrt(v @ v)
        if norm_u == 0 or norm_v == 0:
            return 0.0, np.zeros_like(u), np.zeros_like(v)
        c = (u @ v) / (norm_u * norm_v)
        return c, v / (norm_u * norm_v) - c * u / norm_u**2, u / (norm_u * norm_v) - c * v / norm_v**2
    raise ValueError(f"unknown similarity {kind!r}")


def reduction_weight(terms, reduction):
    """The weight w with ρ(terms) = w · Σ terms: 1/n ("mean"), 1 ("sum"), 1/#{ℓ > 0} ("mean_nonzero"); 0 where
    there is nothing to divide by. The gradient of ρ is w times the gradient of Σ terms (the counts are piecewise
    constant), so a textbook loss accumulates the gradient of the sum and multiplies by w once."""
    check_option(reduction, "reduction", REDUCTIONS)
    if reduction == "sum":
        return 1.0
    count = len(terms) if reduction == "mean" else sum(1 for t in terms if t > 0)
    return 1.0 / count if count else 0.0


def hinge(z):
    """[z]₊ and its derivative: active, with slope 1, iff z > 0 (metricloss's convention at the kink)."""
    return (z, 1.0) if z > 0 else (0.0, 0.0)


def softplus(z):
    """log(1 + eᶻ) and its derivative σ(z), without overflow."""
    return max(z, 0.0) + np.log1p(np.exp(-abs(z))), 0.5 * (1 + np.tanh(z / 2))


class Batch:
    """A labelled batch as the textbook reads it: anchors x_a with labels y_a, candidates r_j with labels y_j
    (the batch itself, or a reference set), and one gradient array per input.

    Within one batch the candidates are the anchors themselves, so ``grad_candidates`` *is* ``grad_anchors`` (a
    pair's two ends add into the same array), and an anchor is not its own candidate.
    """

    def __init__(self, embeddings, labels, ref_embeddings=None, ref_labels=None):
        self.x = rows(embeddings)
        self.labels = np.asarray(labels)
        self.within = ref_embeddings is None
        self.r = self.x if self.within else rows(ref_embeddings)
        self.ref_labels = self.labels if self.within else np.asarray(ref_labels)
        self.grad_anchors = np.zeros_like(self.x)
        self.grad_candidates = self.grad_anchors if self.within else np.zeros_like(self.r)

    def candidates(self, a):
        """Every candidate j of anchor a (not a itself within one batch)."""
        return [j for j in range(len(self.r)) if not (self.within and j == a)]

    def positives(self, a):
        """The candidates of a's class."""
        return [j for j in self.candidates(a) if self.ref_labels[j] == self.labels[a]]

    def negatives(self, a):
        """The candidates of another class."""
        return [j for j in self.candidates(a) if self.ref_labels[j] != self.labels[a]]

    def distance(self, a, j, metric):
        """d(x_a, r_j) and a function that adds slope · ∂d/∂(x_a, r_j) into the gradients: the chain rule's
        last step, ∂L/∂x += ∂L/∂d · ∂d/∂x, for this one pair."""
        d, dd_dxa, dd_drj = distance(self.x[a], self.r[j], metric)

        def add_slope(slope):
            self.grad_anchors[a] += slope * dd_dxa
            self.grad_candidates[j] += slope * dd_drj

        return d, add_slope

    def similarity(self, a, j, kind):
        """s(x_a, r_j) and a function that adds slope · ∂s/∂(x_a, r_j) into the gradients."""
        s, ds_dxa, ds_drj = similarity(self.x[a], self.r[j], kind)

        def add_slope(slope):
            self.grad_anchors[a] += slope * ds_dxa
            self.grad_candidates[j] += slope * ds_drj

        return s, add_slope

    def gradients(self, weight):
        """The gradients times the reduction's weight: one array within a batch, (∂L/∂x, ∂L/∂refs) with a
        reference set."""
        if self.within:
            return weight * self.grad_anchors
        return weight * self.grad_anchors, weight * self.grad_candidates


def logsumexp(exponents):
    """log Σ_k e^{v_k} and its gradient, the softmax weights p_k = e^{v_k} / Σ e^{v}, shifted by the largest v
    (no overflow): top + log(1 + Σ_{k ≠ k*} e^{v_k − top}), k* the first largest, by log1p (1 plus tiny terms keeps
    their digits). An empty sum has log −∞ and no weights."""
    if not exponents:
        return -np.inf, []
    k_top = int(np.argmax(exponents))
    top = exponents[k_top]
    scaled = [np.exp(v - top) for v in exponents]  # e^{v_k − top} <= 1; exactly 1 at k*
    rest = sum(s for k, s in enumerate(scaled) if k != k_top)
    return top + np.log1p(rest), [s / (1.0 + rest) for s in scaled]  # ∂/∂v_k = e^{v_k − top} / Σ e^{v − top}
