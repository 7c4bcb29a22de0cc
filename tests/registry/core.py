"""The contract registry's core: the kinds of arguments, ``LossCase`` and the helpers that build cases, and the cases
of the pair losses and the triplet family; the other families' cases are in the modules beside this one.

A ``LossCase`` gives the loss bound to its hyper-parameters, its textbook twin (``metricloss.textbook``: the
paper's formula as loops, the gradient term by term, float64; the oracle for value and gradient), a factory of
valid random inputs, literal cases computed by hand, inputs where nothing is active, and which invariances hold.
"""

import functools
import math
from dataclasses import dataclass, field

import numpy as np

import metricloss as ml
from metricloss import textbook

# The kinds of positional array arguments; each kind has its own generator and its own bad-input mutations.
# Differentiable: EMBEDDINGS (rows of features), CENTERS (one row of features per class: learnable centres, rows
# not shared with the embeddings), CLASS_PARAMS (1-D, one learnable number per class, indexed by the labels like
# the centres' rows: the margin loss's β), SCORES (any shape), SCORE_MATRIX (2-D, queries × items). The others are held
# fixed: LABELS (integer classes), SIGNS ({−1, 1}), BINARY ({0, 1}), RELEVANCE (a boolean matrix shaped like the
# score matrix).
EMBEDDINGS, CENTERS, SCORES, SCORE_MATRIX = "embeddings", "centers", "scores", "score_matrix"
CLASS_PARAMS = "class_params"
LABELS, SIGNS, BINARY, RELEVANCE = "labels", "signs", "binary", "relevance"
DIFFERENTIABLE = (EMBEDDINGS, CENTERS, CLASS_PARAMS, SCORES, SCORE_MATRIX)
# the kinds whose rows lie in the embeddings' feature space (translated, rotated and scaled with them)
FEATURE_ROWS = (EMBEDDINGS, CENTERS)
# the kinds whose rows the labels index (one row per class)
INDEXED_BY_LABELS = (CENTERS, CLASS_PARAMS)


@dataclass(frozen=True)
class LossCase:
    id: str
    loss: object  # (*arrays) -> (value, grad); hyper-parameters bound
    arg_names: tuple
    arg_kinds: tuple
    textbook: object  # the textbook twin, called as the loss is: (*arrays, **hyper) -> (value, grad)
    # (rng, dtype) -> list of arrays, valid and away from kinks: test_contract's
    # test_inputs_are_away_from_kinks holds the finite-difference rung's inputs to it
    make_inputs: object
    literals: tuple = ()  # (arrays, value, grads or None), computed by hand
    inactive: tuple = ()  # (description, arrays): nothing active, so (0.0, zeros)
    no_inactive: str = ""  # where ``inactive`` is empty: why no input of this configuration has nothing active
    translation_invariant: bool = False
    rotation_invariant: bool = False
    bad_hyper: tuple = ()  # (kwargs, exception, text the message must contain)
    backends: bool = False  # takes backend=, so numpy and numba must agree
    row_groups: tuple = ()  # which arguments share their rows (default: all of them); differentiable ones first
    # per argument, the row group its columns follow (None: its columns are features), e.g. a relevance matrix
    # whose rows are the queries' and whose columns are the items'
    column_groups: tuple = ()
    # the row groups the loss is equivariant under (None: all); () for a loss that depends on the order of its rows
    permutable_groups: tuple | None = None
    # for a loss whose gradient is not its value's (weights held constant, as the circle loss's detached α):
    # (point arrays, *arrays) -> the value of the objective whose gradient it returns at the point; None otherwise
    frozen_value: object = None
    hyper: dict = field(default_factory=dict)

    @property
    def n_diff(self):
        return sum(kind in DIFFERENTIABLE for kind in self.arg_kinds)

    def __call__(self, *arrays, **extra):
        return self.loss(*arrays, **self.hyper, **extra)

    def textbook_result(self, *arrays):
        """(value, grad) of the textbook twin on these arrays."""
        return self.textbook(*arrays, **self.hyper)

    def of_differentiable(self, loss, arrays, convert):
        """``loss`` as a function of this case's differentiable arrays alone (the others converted with
        ``convert`` and held fixed), and those arrays converted: for the framework adapters' gradient checks."""
        is_float = [kind in DIFFERENTIABLE for kind in self.arg_kinds]
        converted = [convert(a) for a in arrays]

        def of_floats(*floats):
            it = iter(floats)
            return loss(*[next(it) if f else a for a, f in zip(converted, is_float, strict=True)])

        return of_floats, [a for a, f in zip(converted, is_float, strict=True) if f]


# ---------------------------------------------------------------------------------------------------------------
# Oracles: slow loops in float64.


def _variance(values):
    mean = sum(values) / len(values)
    return sum((a - mean) ** 2 for a in values) / len(values)


def _distance(u, v, metric):
    """D(u, v), u the anchor (for the asymmetric SNR distance)."""
    if metric == "dot":
        return -sum(a * b for a, b in zip(u, v, strict=True))
    if metric == "snr":  # Var(v − u) / Var(u); a constant anchor's distance is 1 by convention
        if all(a == u[0] for a in u):
            return 1.0
        return _variance([b - a for a, b in zip(u, v, strict=True)]) / _variance(list(u))
    if metric == "cosine":
        nu, nv = math.sqrt(sum(a * a for a in u)), math.sqrt(sum(b * b for b in v))
        if nu == 0 or nv == 0:
            return 1.0
        return 1.0 - sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv)
    squared = sum((a - b) ** 2 for a, b in zip(u, v, strict=True))
    return squared if metric == "sqeuclidean" else math.sqrt(squared)


def _reduce(terms, reduction):
    if reduction == "sum":
        return sum(terms)
    kept = terms if reduction == "mean" else [t for t in terms if t > 0]
    return sum(kept) / len(kept) if kept else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Input factories: small random batches, scaled so that some terms are active and some are not.


def _labelled_batch(rng, dtype, n=8, features=3):
    return [(0.6 * rng.standard_normal((n, features))).astype(dtype), rng.integers(0, 3, size=n)]


def _explicit_pairs(rng, dtype, targets, n=7, features=3):
    x1 = (0.6 * rng.standard_normal((n, features))).astype(dtype)
    x2 = (x1 + 0.5 * rng.standard_normal((n, features))).astype(dtype)
    return [x1, x2, rng.choice(targets, size=n)]


def _scores(rng, dtype, n=9):
    return [
        rng.standard_normal(n).astype(dtype),
        rng.standard_normal(n).astype(dtype),
        rng.choice([-1, 1], size=n),
    ]


def _triplets(rng, dtype, n=6, features=4):
    anchor = rng.standard_normal((n, features))
    positive = anchor + 0.6 * rng.standard_normal((n, features))
    negative = anchor + 0.9 * rng.standard_normal((n, features))
    return [a.astype(dtype) for a in (anchor, positive, negative)]


def _query_reference_batch(rng, dtype, n=7, n_refs=9, features=3):
    x = (0.6 * rng.standard_normal((n, features))).astype(dtype)
    refs = (0.6 * rng.standard_normal((n_refs, features))).astype(dtype)
    return [x, refs, rng.integers(0, 3, size=n), rng.integers(0, 3, size=n_refs)]


def _hinge_scores(rng, dtype, n=9):
    return [np.abs(1.5 * rng.standard_normal(n)).astype(dtype), rng.choice([-1, 1], size=n)]


# A loss that needs a symmetric distance >= 0 refuses the others ("dot" may be negative, "snr" is not symmetric),
# naming the distances it takes.
_SYMMETRIC_DISTANCES_ONLY = tuple(
    ({"distance": name}, ValueError, f"distance must be one of 'euclidean', 'sqeuclidean', 'cosine'; got {name!r}")
    for name in ("manhattan", "dot", "snr")
)
_NEGATIVE_MARGIN = ({"margin": -0.5}, ValueError, "margin must be >= 0")
_BAD_REDUCTION = (
    {"reduction": "average"},
    ValueError,
    "reduction must be one of 'mean', 'sum', 'mean_nonzero'",
)


# ---------------------------------------------------------------------------------------------------------------
# Literal cases, computed by hand. Each comment shows the arithmetic.

# Contrastive, three points a = (0, 0), b = (0, 0.5), c = (0.6, 0) with labels (0, 0, 1), margin 1:
#   d_ab = 0.5 (similar), d_ac = 0.6 (dissimilar), d_bc = √(0.36 + 0.25) = √0.61 (dissimilar).
_ABC = np.array([[0.0, 0.0], [0.0, 0.5], [0.6, 0.0]])
_ABC_LABELS = np.array([0, 0, 1])
_R61 = math.sqrt(0.61)
# hadsell, mean: (½·0.5² + ½·0.4² + ½·(1 − √0.61)²) / 3.  ∂L/∂d: d_ab/3 = 0.5/3, −(1 − d_ac)/3 = −0.4/3,
# −(1 − √0.61)/3. ∂d_ab/∂a = (a − b)/0.5 = (0, −1), ∂d_ac/∂a = (a − c)/0.6 = (−1, 0),
# ∂d_bc/∂b = (b − c)/√0.61 = (−0.6, 0.5)/√0.61. So
#   ∂L/∂a = 0.5/3·(0, −1) − 0.4/3·(−1, 0) = (0.4/3, −0.5/3)
#   ∂L/∂b = 0.5/3·(0, 1) − (1 − √0.61)/3·(−0.6, 0.5)/√0.61
#   ∂L/∂c = −(∂L/∂a + ∂L/∂b)  (translation invariance)
_K = (1 - _R61) / 3 / _R61
_ABC_GRAD_A = np.array([0.4 / 3, -0.5 / 3])
_ABC_GRAD_B = np.array([0.0, 0.5 / 3]) - _K * np.array([-0.6, 0.5])
_ABC_HADSELL_GRAD = np.array([_ABC_GRAD_A, _ABC_GRAD_B, -(_ABC_GRAD_A + _ABC_GRAD_B)])
_ABC_HADSELL = (0.125 + 0.08 + 0.5 * (1 - _R61) ** 2) / 3
# linear, PML's configuration (pos_margin 0, mean over non-zero terms of each part, summed):
#   positives {0.5} → 0.5; negatives {0.4, 1 − √0.61} → (1.4 − √0.61) / 2.
_ABC_PML = 0.5 + (1.4 - _R61) / 2
# sqeuclidean, linear, pos_margin 0.1, margin 0.5, sum: d²_ab = 0.25 → 0.15; d²_ac = 0.36 → 0.14; d²_bc = 0.61 → 0.
_ABC_SQ_LINEAR_SUM = 0.15 + 0.14

# Explicit pairs: x1 = 0, x2 = (0.6, 0.8) similar (d = 1), (0.3, 0.4) dissimilar (d = 0.5); hadsell, margin 1:
#   (½·1² + ½·0.5²)/2 = 0.3125;  ∂L/∂d = (1/2, −0.5/2);  ∂d/∂x1 = (x1 − x2)/d
#   ∂L/∂x1 = (0.5·(−0.6, −0.8), −0.25·(−0.3, −0.4)/0.5) = ((−0.3, −0.4), (0.15, 0.2)),  ∂L/∂x2 = −∂L/∂x1
_PAIRS = [np.zeros((2, 2)), np.array([[0.6, 0.8], [0.3, 0.4]]), np.array([1, 0])]
_PAIRS_GRAD_X1 = np.array([[-0.3, -0.4], [0.15, 0.2]])

# SNR pairs, hadsell, margin 1.5, mean: d = Var(x2 − x1) / Var(x1) (population variances; the normalisation cancels).
#   Pair 0 (similar): x1 = (0, 2), x2 = (0, 1): x̃1 = (−1, 1), n = ‖x̃1‖² = 2, x̃2 = (−0.5, 0.5), d = 0.25 / 1 = 0.25;
#     ℓ = ½·0.25², ∂L/∂d = 0.25 / 2 = 0.125. ∂d/∂x̃1 = (2/n)((1 − d) x̃1 − x̃2) = 0.75·(−1, 1) − (−0.5, 0.5)
#     = (−0.25, 0.25), ∂d/∂x̃2 = 2(x̃2 − x̃1)/n = (0.5, −0.5); both already have mean 0 (the centring changes nothing).
#   Pair 1 (dissimilar): x1 = (0, 1), x2 = (0, 2): x̃1 = (−0.5, 0.5), n = 0.5, x̃2 = (−1, 1), d = 0.25 / 0.25 = 1;
#     h = 1.5 − 1 = 0.5, ℓ = ½·0.5², ∂L/∂d = −0.5 / 2 = −0.25. ∂d/∂x̃1 = (2/0.5)(0·x̃1 − x̃2) = (4, −4),
#     ∂d/∂x̃2 = 2·(−0.5, 0.5)/0.5 = (−2, 2).
#   Value (½·0.0625 + ½·0.25) / 2 = 0.078125; ∂L/∂x1 = (0.125·(−0.25, 0.25), −0.25·(4, −4)),
#   ∂L/∂x2 = (0.125·(0.5, −0.5), −0.25·(−2, 2)).
_SNR_PAIRS = [np.array([[0.0, 2.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [0.0, 2.0]]), np.array([1, 0])]
_SNR_PAIRS_GRADS = (
    np.array([[-0.03125, 0.03125], [-1.0, 1.0]]),
    np.array([[0.0625, -0.0625], [0.5, -0.5]]),
)

# Margin ranking, margin 0.5, sum: terms [−1·(2 − 1) + 0.5]₊ = 0 and [−1·(0 − 1) + 0.5]₊ = 1.5, sum 1.5;
#   the second term's gradient: ∂/∂x1 = −y = −1, ∂/∂x2 = +y = +1.
_RANKING = [np.array([2.0, 0.0]), np.array([1.0, 1.0]), np.array([1, 1])]

# Cosine embedding, margin 0.5: x1 rows (1, 0), x2 rows (1, 1): c = 1/√2 (ε = 1e-12 moves it by ~1e-12).
#   (1 − c) + (c − 0.5) = 0.5, mean 0.25.  ∂c/∂x1 = x2/(‖x1‖‖x2‖) − c·x1/‖x1‖² = (1, 1)/√2 − (1, 0)/√2 = (0, 1/√2);
#   ∂c/∂x2 = x1/(‖x1‖‖x2‖) − c·x2/‖x2‖² = (1, 0)/√2 − (1, 1)/(2√2) = (1, −1)/(2√2).
#   Row 0 (similar) has ∂ℓ/∂c = −1, row 1 (dissimilar, active) +1; both halved by the mean.
_COSINE = [np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([1, -1])]
_S = 1 / math.sqrt(2)
_COSINE_GRADS = (
    np.array([[0.0, -_S / 2], [0.0, _S / 2]]),
    np.array([[-_S / 4, _S / 4], [_S / 4, -_S / 4]]),
)

# Hinge embedding, margin 1: 0.5 (similar) + [1 − 0.25]₊ + [1 − 2]₊ = 1.25, mean 1.25/3; ∂ = (1, −1, 0)/3.
_HINGE = [np.array([0.5, 0.25, 2.0]), np.array([1, -1, -1])]

# Triplets with eps = 0:
#   p = 2: a = (0, 0), p = (0, 1), n = (1.5, 0): [1 + 1 − 1.5]₊ = 0.5; ∂d_ap/∂a = (a − p)/1 = (0, −1),
#          ∂d_an/∂a = (a − n)/1.5 = (−1, 0): ∂L/∂a = (0, −1) − (−1, 0) = (1, −1), ∂L/∂p = (0, 1), ∂L/∂n = (−1, 0).
#   swap:  n = (0.5, 1): d_an = √1.25 ≈ 1.118 > d_pn = 0.5, so [1 + 1 − 0.5]₊ = 1.5 uses d_pn;
#          ∂L/∂a = (0, −1), ∂L/∂p = (0, 1) − (p − n)/0.5 = (0, 1) − (−1, 0) = (1, 1), ∂L/∂n = (p − n)/0.5 = (−1, 0).
#   p = 1, margin 1.5: a = (0, 0), p = (1, 1), n = (2, 1): [1.5 + 2 − 3]₊ = 0.5; ∂‖u‖₁/∂u = sign(u):
#          ∂L/∂a = sign(a − p) − sign(a − n) = 0, ∂L/∂p = −sign(a − p) = (1, 1), ∂L/∂n = sign(a − n) = (−1, −1).
_TRIPLET = [np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.5, 0.0]])]
_TRIPLET_SWAP = [np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[0.5, 1.0]])]
_TRIPLET_L1 = [np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]), np.array([[2.0, 1.0]])]


# Online triplets on A = (0, 0), B = (0, 0.5) (class 0) and C = (0.8, 0), D = (3, 0) (class 1), margin 1.
# Distances: AB 0.5, AC 0.8, AD 3, BC √0.89 = r, BD √9.25 = s, CD 2.2.
#   batch-all: A: [0.5 − 0.8 + 1] = 0.7, [0.5 − 3 + 1]₊ = 0; B: 1.5 − r, 0; C (positive D): 3.2 − 0.8 = 2.4,
#   3.2 − r; D (positive C): 3.2 − 3 = 0.2, 3.2 − s. Six non-zero terms: (11.2 − 2r − s) / 6.
#   batch-hard: A: 0.7; B: 1.5 − r; C: hardest negative A: 2.4; D: hardest negative A: 0.2. Mean (4.8 − r) / 4.
#     Gradient (w = 1/4): ∂L/∂D = w(D − C)/2.2 (as anchor) − w(D − A)/3 + w(D − C)/2.2 (as C's positive)
#     = (1/4, 0); ∂L/∂A = w(0, −1) − w(−1, 0) [anchor A] + w(0, −1) [B's positive] + w(1, 0) [D's negative]
#     + w(1, 0) [C's negative] = (3/4, −1/2); ∂L/∂B = w(0, 1) + w(0, 1) − w(B − C)/r = (0.2/r, 0.5 − 0.125/r);
#     ∂L/∂C = −(∂L/∂A + ∂L/∂B + ∂L/∂D) (translation invariance).
#   semi-hard: A: closest negative beyond 0.5 is C: 0.7; B: C: 1.5 − r; C: none beyond 2.2, so the farthest, B:
#     3.2 − r; D: A: 0.2. Mean (5.6 − 2r) / 4.
_ABCD = np.array([[0.0, 0.0], [0.0, 0.5], [0.8, 0.0], [3.0, 0.0]])
_ABCD_LABELS = np.array([0, 0, 1, 1])
_R, _S_ = math.sqrt(0.89), math.sqrt(9.25)
_ABCD_HARD_GRAD = np.array([[0.75, -0.5], [0.2 / _R, 0.5 - 0.125 / _R], [0.0, 0.0], [0.25, 0.0]])
_ABCD_HARD_GRAD[2] = -_ABCD_HARD_GRAD.sum(axis=0)


# ---------------------------------------------------------------------------------------------------------------
# Inputs where nothing is active.

_ONE_SAMPLE = ("one sample", [np.array([[0.3, -0.2, 0.1]]), np.array([4])])
_DUPLICATES_ONE_CLASS = (
    "one class, all rows equal",
    [np.tile([[0.5, -1.0, 2.0]], (4, 1)), np.zeros(4, dtype=int)],
)
_FAR_APART = (
    "every class far apart",
    [np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), np.array([0, 1, 2])],
)
_SATISFIED_TRIPLETS = (
    "every triplet satisfied",
    [np.zeros((2, 2)), np.array([[0.1, 0.0], [0.0, 0.1]]), np.array([[5.0, 0.0], [0.0, -5.0]])],
)


def _invariances(distance):
    """Translation: only the Euclidean distances (the cosine and the dot product depend on the origin; the SNR
    distance is invariant to adding a constant to each row, not to a shift along a general direction). Rotation:
    all but the SNR distance (its centring subtracts the mean of the coordinates, which a rotation does not keep)."""
    return {
        "translation_invariant": distance in ("euclidean", "sqeuclidean"),
        "rotation_invariant": distance != "snr",
    }


def _case(id, loss, arg_names, arg_kinds, textbook, make_inputs, **options):
    hyper = options.pop("hyper", {})
    return LossCase(id, loss, arg_names, arg_kinds, textbook, make_inputs, hyper=hyper, **options)


def _references_first(loss):
    """``loss`` on a query-vs-reference batch as a function of (embeddings, ref_embeddings, labels, ref_labels):
    the differentiable arrays first, as the contract wants them."""

    def with_references_first(x, refs, labels, ref_labels, **hyper):
        return loss(x, labels, ref_embeddings=refs, ref_labels=ref_labels, **hyper)

    return with_references_first


def _batch_case(family, id, loss, textbook, hyper, *, inactive, bad_hyper, literals=(), references=False):
    """A loss on a labelled batch, ``family[id]``, or with ``references`` on a query-vs-reference batch,
    ``family_references[id]``: the kernels' backends, and the invariances of its distance."""
    options = {
        "hyper": hyper,
        "literals": literals,
        "inactive": inactive,
        **_invariances(hyper.get("distance", "euclidean")),
        "bad_hyper": bad_hyper,
        "backends": True,
    }
    if not references:
        return _case(
            f"{family}[{id}]",
            loss,
            ("embeddings", "labels"),
            (EMBEDDINGS, LABELS),
            textbook,
            _labelled_batch,
            **options,
        )
    return _case(
        f"{family}_references[{id}]",
        _references_first(loss),
        ("embeddings", "ref_embeddings", "labels", "ref_labels"),
        (EMBEDDINGS, EMBEDDINGS, LABELS, LABELS),
        _references_first(textbook),
        _query_reference_batch,
        row_groups=(0, 1, 0, 1),  # queries and their labels; references and theirs
        **options,
    )


_CONTRASTIVE_OPTIONS_BAD = (
    _BAD_REDUCTION,
    ({"form": "hinge"}, ValueError, "form must be one of 'hadsell', 'squared', 'linear'"),
    (
        {"distance": "manhattan"},
        ValueError,
        "distance must be one of 'euclidean', 'sqeuclidean', 'cosine', 'dot', 'snr'; got 'manhattan'",
    ),
    ({"split_reduction": "yes"}, TypeError, "split_reduction must be True or False"),
)
_CONTRASTIVE_BAD = (
    _NEGATIVE_MARGIN,
    ({"pos_margin": -2e18}, ValueError, "pos_margin must be >= -1e+18 and <= 1e+18"),
    *_CONTRASTIVE_OPTIONS_BAD,
)
# With distance="dot" (−x·y, of any sign) the margins may be negative, within ±MAX_MARGIN.
_CONTRASTIVE_DOT_BAD = (
    ({"margin": -2e18}, ValueError, "margin must be >= -1e+18 and <= 1e+18"),
    ({"pos_margin": 2e18}, ValueError, "pos_margin must be >= -1e+18 and <= 1e+18"),
    *_CONTRASTIVE_OPTIONS_BAD,
)


def _contrastive_bad(hyper):
    return _CONTRASTIVE_DOT_BAD if hyper.get("distance") == "dot" else _CONTRASTIVE_BAD


def _contrastive(id, hyper, literals=(), inactive=(_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART)):
    return _batch_case(
        "contrastive",
        id,
        ml.contrastive_loss,
        textbook.contrastive_loss,
        hyper,
        literals=literals,
        inactive=inactive,
        bad_hyper=(
            *_contrastive_bad(hyper),
            ({"backend": "cupy"}, ValueError, "backend must be one of 'numpy', 'numba'"),
        ),
    )


def _contrastive_pair(id, hyper, literals=()):
    # rows that are not constant: a constant anchor's SNR distance is 1 by convention, not 0
    identical = (
        "identical similar pairs",
        [np.tile([[1.0, 2.0]], (3, 1)), np.tile([[1.0, 2.0]], (3, 1)), np.ones(3, int)],
    )
    # far apart under every distance: Euclidean 5, cosine > 1, dot 3, SNR Var((−4, 3)) / Var((1, 0)) = 49
    distant = (
        "distant dissimilar pairs",
        [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[-3.0, 3.0], [3.0, -3.0]]), np.array([0, 0])],
    )
    return _case(
        f"contrastive_pair[{id}]",
        ml.contrastive_pair_loss,
        ("x1", "x2", "y"),
        (EMBEDDINGS, EMBEDDINGS, BINARY),
        textbook.contrastive_pair_loss,
        functools.partial(_explicit_pairs, targets=[0, 1]),
        hyper=hyper,
        literals=literals,
        inactive=(identical, distant),
        **_invariances(hyper.get("distance", "euclidean")),
        bad_hyper=_contrastive_bad(hyper),
    )


def _contrastive_references(id, hyper):
    unmatched = (
        "references far beyond the margin, none of a query's class",
        [np.zeros((2, 2)), np.full((3, 2), 5.0), np.array([0, 0]), np.array([1, 2, 3])],
    )
    return _batch_case(
        "contrastive",
        id,
        ml.contrastive_loss,
        textbook.contrastive_loss,
        hyper,
        inactive=(unmatched,),
        bad_hyper=_contrastive_bad(hyper),
        references=True,
    )


def _triplet_margin(id, hyper, literals=()):
    return _case(
        f"triplet_margin[{id}]",
        ml.triplet_margin_loss,
        ("anchors", "positives", "negatives"),
        (EMBEDDINGS,) * 3,
        textbook.triplet_margin_loss,
        _triplets,
        hyper=hyper,
        literals=literals,
        inactive=(_SATISFIED_TRIPLETS,),
        translation_invariant=True,
        rotation_invariant=hyper.get("p", 2) == 2 and hyper.get("eps", 1e-6) == 0,
        bad_hyper=(
            _NEGATIVE_MARGIN,
            _BAD_REDUCTION,
            ({"p": 0.5}, ValueError, "p must be >= 1.0"),
            ({"eps": -1e-6}, ValueError, "eps must be >= 0.0"),
            ({"swap": 1}, TypeError, "swap must be True or False"),
        ),
    )


def _margin_ranking(id, hyper, literals=()):
    ranked = ("every pair ranked right", [np.array([3.0, 1.0]), np.array([1.0, 3.0]), np.array([1, -1])])
    return _case(
        f"margin_ranking[{id}]",
        ml.margin_ranking_loss,
        ("x1", "x2", "y"),
        (SCORES, SCORES, SIGNS),
        textbook.margin_ranking_loss,
        _scores,
        hyper=hyper,
        literals=literals,
        inactive=(ranked,),
        bad_hyper=(_NEGATIVE_MARGIN, _BAD_REDUCTION),
    )


def _cosine_embedding(id, hyper, literals=()):
    opposed = (
        "dissimilar pairs with negative cosine",
        [np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[-1.0, 0.5], [1.0, -3.0]]), np.array([-1, -1])],
    )
    return _case(
        f"cosine_embedding[{id}]",
        ml.cosine_embedding_loss,
        ("x1", "x2", "y"),
        (EMBEDDINGS, EMBEDDINGS, SIGNS),
        textbook.cosine_embedding_loss,
        functools.partial(_explicit_pairs, targets=[-1, 1]),
        hyper=hyper,
        literals=literals,
        inactive=(opposed,),
        rotation_invariant=True,
        bad_hyper=(_BAD_REDUCTION, ({"margin": 1.5}, ValueError, "margin must be >= -1.0 and <= 1.0")),
    )


def _hinge_embedding(id, hyper, literals=()):
    beyond = ("dissimilar beyond the margin", [np.array([2.5, 3.0]), np.array([-1, -1])])
    return _case(
        f"hinge_embedding[{id}]",
        ml.hinge_embedding_loss,
        ("x", "y"),
        (SCORES, SIGNS),
        textbook.hinge_embedding_loss,
        _hinge_scores,
        hyper=hyper,
        literals=literals,
        inactive=(beyond,),
        bad_hyper=(_NEGATIVE_MARGIN, _BAD_REDUCTION),
    )


_SEPARATED = (
    "two classes, far apart",
    [np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]]), np.array([0, 0, 1, 1])],
)
_TRIPLET_BAD = (
    _NEGATIVE_MARGIN,
    _BAD_REDUCTION,
    ({"mining": "batch_hard"}, ValueError, "mining must be one of 'all', 'hard', 'semihard', 'all_semihard'"),
    ({"mining": "all_semihard", "soft": True}, ValueError, "soft=True needs mining='all', 'hard' or 'semihard'"),
    ({"incomplete_anchors": "skip"}, ValueError, "incomplete_anchors must be one of 'drop', 'keep'"),
    *(
        ({"mining": m, "soft": False, "incomplete_anchors": "keep"}, ValueError, "incomplete_anchors='keep' needs")
        for m in ("all", "semihard", "all_semihard")
    ),
    ({"distance": "l1"}, ValueError, "distance must be one of"),
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
)


def _triplet(id, hyper, literals=()):
    keep, soft = hyper.get("incomplete_anchors") == "keep", hyper.get("soft", False)
    inactive = [_ONE_SAMPLE]
    if not keep:  # kept anchors without a negative compare with the row's largest distance: 0 here, so cost m
        inactive.append(_DUPLICATES_ONE_CLASS)
    if not (keep and soft):  # no positive pairs (soft and kept: d⁺ = 0 still costs softplus(−d⁻))
        inactive.append(_FAR_APART)
    if not soft and hyper.get("distance", "euclidean") in ("euclidean", "sqeuclidean"):  # every triplet beyond the
        # margin (softplus never is 0; the cosine, dot and SNR distances do not see these classes as far apart)
        inactive.append(_SEPARATED)
    return _batch_case(
        "triplet",
        id,
        ml.triplet_loss,
        textbook.triplet_loss,
        hyper,
        literals=literals,
        inactive=tuple(inactive),
        bad_hyper=_TRIPLET_BAD,
    )


def triplet_of_all_pairs(x, labels, *, distance="euclidean", backend=None, **hyper):
    """triplet_loss on the triplets that every positive and negative pair of the batch make together: mine_pairs
    (kind="all") through pairs_to_triplets, given as ``triplets=``; batch-all by another path."""
    pairs = ml.mine_pairs(x, labels, kind="all", distance=distance, backend=backend)
    triplets = ml.pairs_to_triplets(*pairs)
    return ml.triplet_loss(x, labels, triplets=triplets, distance=distance, backend=backend, **hyper)


def _triplet_of_pairs(id, hyper, literals=()):
    inactive = (_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART) + (() if hyper.get("soft") else (_SEPARATED,))
    bad_hyper = (
        _NEGATIVE_MARGIN,
        _BAD_REDUCTION,
        ({"mining": "hard"}, ValueError, "triplets= gives the triplets, which mining would choose"),
        ({"distance": "l1"}, ValueError, "distance must be one of"),
    )
    return _batch_case(
        "triplet_of_pairs",
        id,
        triplet_of_all_pairs,
        textbook.triplet_loss,
        hyper,
        literals=literals,
        inactive=inactive,
        bad_hyper=bad_hyper,
    )


def _triplet_with_references(id, hyper):
    unmatched = (
        "no reference shares a query's class",
        [np.zeros((2, 2)), np.ones((3, 2)), np.array([0, 0]), np.array([1, 2, 3])],
    )
    return _batch_case(
        "triplet",
        id,
        ml.triplet_loss,
        textbook.triplet_loss,
        hyper,
        inactive=(unmatched,),
        bad_hyper=_TRIPLET_BAD,
        references=True,
    )


CASES = [
    _contrastive("hadsell", {}, literals=(([_ABC, _ABC_LABELS], _ABC_HADSELL, (_ABC_HADSELL_GRAD,)),)),
    _contrastive(
        "linear-pml",
        {"form": "linear", "pos_margin": 0.2, "reduction": "mean_nonzero", "split_reduction": True},
    ),
    _contrastive(
        "linear-pml-literal",
        {"form": "linear", "reduction": "mean_nonzero", "split_reduction": True},
        literals=(([_ABC, _ABC_LABELS], _ABC_PML, None),),
    ),
    _contrastive("squared-cosine-sum", {"form": "squared", "distance": "cosine", "margin": 0.5, "reduction": "sum"}),
    _contrastive(  # PML's pos_margin = 1.2 on cosine similarity: every similar pair costs, coinciding ones too
        "linear-cosine-negative-pos-margin",
        {
            "form": "linear",
            "distance": "cosine",
            "pos_margin": -0.2,
            "reduction": "mean_nonzero",
            "split_reduction": True,
        },
        inactive=(_ONE_SAMPLE, _FAR_APART),
    ),
    _contrastive(
        "linear-sqeuclidean-sum",
        {"form": "linear", "distance": "sqeuclidean", "pos_margin": 0.1, "margin": 0.5, "reduction": "sum"},
        literals=(([_ABC, _ABC_LABELS], _ABC_SQ_LINEAR_SUM, None),),
    ),
    _contrastive_references("hadsell", {}),
    _contrastive_references(
        "linear-pml-sqeuclidean",
        {
            "form": "linear",
            "distance": "sqeuclidean",
            "reduction": "mean_nonzero",
            "split_reduction": True,
            "margin": 2.0,
        },
    ),
    _contrastive_references("squared-cosine-sum", {"form": "squared", "distance": "cosine", "reduction": "sum"}),
    # PML's ContrastiveLoss(pos_margin=0.3, neg_margin=0.1, distance=DotProductSimilarity()): margins −0.3, −0.1
    _contrastive(
        "linear-pml-dot",
        {
            "form": "linear",
            "distance": "dot",
            "pos_margin": -0.3,
            "margin": -0.1,
            "reduction": "mean_nonzero",
            "split_reduction": True,
        },
    ),
    _contrastive("hadsell-snr", {"distance": "snr", "pos_margin": 0.5}),
    # linear: the squared forms on dot products are of degree 4 in the rows, whose float32 gradients underflow inside
    # the range test_magnitudes promises for degree 2 (tests/test_snr_dot.py checks every form by differences)
    _contrastive_references(
        "linear-dot-sum", {"form": "linear", "distance": "dot", "margin": -0.2, "reduction": "sum"}
    ),
    _contrastive_references(
        "linear-pml-snr",
        {"form": "linear", "distance": "snr", "pos_margin": 0.4, "reduction": "mean_nonzero", "split_reduction": True},
    ),
    _contrastive_pair("linear-dot", {"form": "linear", "distance": "dot", "pos_margin": -0.5, "margin": -0.2}),
    _contrastive_pair(
        "hadsell-snr",
        {"distance": "snr", "margin": 1.5},
        literals=((_SNR_PAIRS, 0.078125, _SNR_PAIRS_GRADS),),
    ),
    _contrastive_pair("hadsell", {}, literals=((_PAIRS, 0.3125, (_PAIRS_GRAD_X1, -_PAIRS_GRAD_X1)),)),
    _contrastive_pair("squared-tfa", {"form": "squared", "margin": 1.2}),
    _contrastive_pair(
        "linear-cosine-split",
        {
            "form": "linear",
            "distance": "cosine",
            "margin": 0.3,
            "reduction": "mean_nonzero",
            "split_reduction": True,
        },
    ),
    _margin_ranking("default", {}),
    _margin_ranking(
        "margin-sum",
        {"margin": 0.5, "reduction": "sum"},
        literals=((_RANKING, 1.5, (np.array([0.0, -1.0]), np.array([0.0, 1.0]))),),
    ),
    _cosine_embedding("default", {}),
    _cosine_embedding("margin", {"margin": 0.5}, literals=((_COSINE, 0.25, _COSINE_GRADS),)),
    _cosine_embedding("negative-margin-mean_nonzero", {"margin": -0.2, "reduction": "mean_nonzero"}),
    _hinge_embedding("default", {}, literals=((_HINGE, 1.25 / 3, (np.array([1.0, -1.0, 0.0]) / 3,)),)),
    _hinge_embedding("margin-sum", {"margin": 2.0, "reduction": "sum"}),
    _triplet_margin("torch-default", {}),
    _triplet_margin(
        "exact-l2",
        {"eps": 0.0},
        literals=((_TRIPLET, 0.5, (np.array([[1.0, -1.0]]), np.array([[0.0, 1.0]]), np.array([[-1.0, 0.0]]))),),
    ),
    _triplet_margin(
        "swap",
        {"swap": True, "eps": 0.0},
        literals=((_TRIPLET_SWAP, 1.5, (np.array([[0.0, -1.0]]), np.array([[1.0, 1.0]]), np.array([[-1.0, 0.0]]))),),
    ),
    _triplet_margin(
        "l1",
        {"p": 1, "eps": 0.0, "margin": 1.5},
        literals=((_TRIPLET_L1, 0.5, (np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]), np.array([[-1.0, -1.0]]))),),
    ),
    _triplet_margin("l3-swap-mean_nonzero", {"p": 3, "swap": True, "reduction": "mean_nonzero", "margin": 0.5}),
]

CASES += [
    _triplet("all", {}, literals=(([_ABCD, _ABCD_LABELS], (11.2 - 2 * _R - _S_) / 6, None),)),
    _triplet("all-sqeuclidean-mean", {"distance": "sqeuclidean", "reduction": "mean", "margin": 0.5}),
    _triplet("all-soft", {"soft": True, "margin": 0.2}),
    _triplet("all-soft-cosine-sum", {"soft": True, "distance": "cosine", "reduction": "sum"}),
    _triplet("hard", {"mining": "hard"}, literals=(([_ABCD, _ABCD_LABELS], (4.8 - _R) / 4, (_ABCD_HARD_GRAD,)),)),
    _triplet("hard-keep-soft", {"mining": "hard", "incomplete_anchors": "keep", "soft": True}),
    _triplet("hard-keep-margin", {"mining": "hard", "incomplete_anchors": "keep", "margin": 0.3}),
    _triplet(
        "hard-cosine-mean_nonzero", {"mining": "hard", "distance": "cosine", "reduction": "mean_nonzero", "margin": 0.2}
    ),
    _triplet("semihard", {"mining": "semihard"}, literals=(([_ABCD, _ABCD_LABELS], (5.6 - 2 * _R) / 4, None),)),
    _triplet("semihard-soft-sum", {"mining": "semihard", "soft": True, "margin": 0.1, "reduction": "sum"}),
    _triplet("all_semihard", {"mining": "all_semihard"}),
    _triplet_of_pairs("all", {}, literals=(([_ABCD, _ABCD_LABELS], (11.2 - 2 * _R - _S_) / 6, None),)),  # batch-all's
    _triplet_of_pairs("all-soft-sqeuclidean-sum", {"soft": True, "distance": "sqeuclidean", "reduction": "sum"}),
    _triplet_with_references("all", {}),
    _triplet_with_references("all-soft-sqeuclidean", {"soft": True, "distance": "sqeuclidean"}),
    _triplet_with_references("hard-keep", {"mining": "hard", "incomplete_anchors": "keep"}),
    _triplet_with_references("semihard-sqeuclidean", {"mining": "semihard", "distance": "sqeuclidean"}),
]

# The dot-product distance −x·y (PML's DotProductSimilarity) and the asymmetric SNR distance (PML's SNRDistance):
# within one batch the SNR distances take the per-anchor (not the symmetric) batch-all kernel.
CASES += [
    _triplet("all-dot", {"distance": "dot", "margin": 0.5}),
    _triplet("all-snr", {"distance": "snr", "margin": 0.5}),
    # "mean", not the default "mean_nonzero": SNR distances reach ~150 here (an anchor of small variance), whose
    # softplus(−150) rounds to 0 in float32 and is then not counted, as documented, so float32 would count fewer terms
    _triplet("all-soft-snr", {"soft": True, "distance": "snr", "reduction": "mean"}),
    _triplet("all-soft-dot-sum", {"soft": True, "distance": "dot", "margin": 0.2, "reduction": "sum"}),
    _triplet(
        "hard-dot-mean_nonzero", {"mining": "hard", "distance": "dot", "reduction": "mean_nonzero", "margin": 0.3}
    ),
    _triplet("hard-snr", {"mining": "hard", "distance": "snr"}),
    _triplet("hard-keep-snr", {"mining": "hard", "incomplete_anchors": "keep", "distance": "snr"}),
    _triplet("semihard-snr", {"mining": "semihard", "distance": "snr"}),
    _triplet("semihard-dot", {"mining": "semihard", "distance": "dot"}),
    _triplet("all_semihard-dot", {"mining": "all_semihard", "distance": "dot"}),
    _triplet("all_semihard-snr", {"mining": "all_semihard", "distance": "snr", "margin": 0.8}),
    _triplet_with_references("all-snr", {"distance": "snr"}),
    _triplet_with_references("hard-dot", {"mining": "hard", "distance": "dot"}),
    _triplet_with_references("semihard-snr", {"mining": "semihard", "distance": "snr"}),
    _triplet_with_references("all-soft-dot", {"soft": True, "distance": "dot"}),
]
