"""Row magnitudes across each dtype's whole finite range (issue 9, finding 3): a distance or loss is either right
or refused with a ValueError naming its argument, never NaN, Inf or a silent 0.

References, independent of the magnitude under test:

* distances are homogeneous, so rows scaled by an exact power of two 2^e have distances 2^e D (2^2e for squared
  ones), VJPs scaled by 2^-e (2^e for squared ones; cosine: distances unchanged, VJP scaled by 2^-e): the
  reference is the function on the unscaled rows, where it is checked against scipy's cdist elsewhere;
* every registered loss on float32 embeddings of norm 1e-35 .. 1e18 against the same loss on the same rows in
  float64, whose range holds those magnitudes (and their squares) with room to spare;
* the triplet and contrastive losses in float64 at 1e-300 .. 1e300 by homogeneity: with the margins scaled by the
  same 2^e, their hinge-linear terms scale by 2^e and their mean-reduced gradients are unchanged.
"""

import inspect
import math

import numpy as np
import pytest
from registry import CENTERS, EMBEDDINGS, REGISTRY

import metricloss as ml

DISTANCES = ["euclidean", "sqeuclidean", "cosine"]
BACKENDS = ["numpy", "numba"]
# Powers of ten spanning each dtype's finite range (the rows' entries are about this size).
DECADES = {
    np.float32: [-44, -40, -38, -35, -30, -22, -20, -10, 10, 18, 19, 20, 30, 37, 38],
    np.float64: [-320, -310, -300, -200, -170, -100, 100, 150, 160, 200, 300, 307],
}
# The range promised: distances, VJPs and every loss are right for rows whose entries lie in it.
PROMISED = {np.float32: (-35, 18), np.float64: (-300, 150)}


def _exponent(decade):
    """e with 2^e nearest 10^decade."""
    return round(decade * math.log2(10))


def _rows(rng, dtype, shape=(7, 5)):
    return rng.standard_normal(shape).astype(dtype)


def _scaled(x, e):
    """x · 2^e: exact while x · 2^e stays normal (our decades stay above the subnormals or test the refusal)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(x, e)


def _expected_power(distance):
    return {"euclidean": 1, "sqeuclidean": 2, "cosine": 0}[distance]


def _times_power(value, exponent):
    """value · 2^exponent as a Python float, inf where that overflows float64."""
    try:
        return math.ldexp(value, exponent)
    except OverflowError:
        return math.inf


def _representable(reference, power, e, dtype):
    """Whether reference · 2^(power·e) is a normal number of dtype for every nonzero entry."""
    info = np.finfo(dtype)
    top = _times_power(float(np.max(np.abs(reference))), power * e)
    nonzero = np.abs(reference[reference != 0])
    bottom = _times_power(float(nonzero.min()), power * e) if nonzero.size else 1.0
    return top <= float(info.max) and bottom >= float(info.tiny)


def _assert_scaled(got, reference, power, e, dtype, what):
    assert np.all(np.isfinite(got)), f"{what}: not finite"
    expected = np.ldexp(reference.astype(np.float64), power * e)
    scale = float(np.max(np.abs(expected)))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    assert np.allclose(got, expected, rtol=rtol, atol=rtol * scale), f"{what}: max error {np.max(abs(got - expected))}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_distances_and_vjp_are_homogeneous_or_refused(dtype, distance, backend):
    """pairwise_distances(2^e x, 2^e y) = 2^(pe) pairwise_distances(x, y) for a distance homogeneous of degree p,
    and its VJP (degree p − 1) 2^((p−1)e) times the unscaled one; where 2^(pe)·D overflows, a ValueError names x."""
    rng = np.random.default_rng(0)
    x, y, g = _rows(rng, dtype), _rows(rng, dtype, (6, 5)), rng.standard_normal((7, 6))
    d0, vjp0 = ml.pairwise_distances_vjp(x, y, distance=distance, backend=backend)
    gx0, gy0 = vjp0(g)
    power = _expected_power(distance)
    for decade in DECADES[dtype]:
        e = _exponent(decade)
        xs, ys = _scaled(x, e), _scaled(y, e)
        if not np.all(np.isfinite(xs)) or not (np.finfo(dtype).tiny <= np.max(np.abs(xs)) * 0.01):
            continue  # the rows themselves are not (normal) numbers of this dtype
        in_range = all(_representable(r, p, e, dtype) for r, p in ((d0, power), (gx0, power - 1), (gy0, power - 1)))
        if not in_range:
            if _times_power(float(np.max(np.abs(d0))), power * e) > float(np.finfo(dtype).max):
                with pytest.raises(ValueError, match=r"^x has rows of norm"):
                    ml.pairwise_distances(xs, ys, distance=distance, backend=backend)
            continue
        d, vjp = ml.pairwise_distances_vjp(xs, ys, distance=distance, backend=backend)
        _assert_scaled(d, d0, power, e, dtype, f"distances at 1e{decade}")
        gx, gy = vjp(g)
        _assert_scaled(gx, gx0, power - 1, e, dtype, f"∂/∂x at 1e{decade}")
        _assert_scaled(gy, gy0, power - 1, e, dtype, f"∂/∂y at 1e{decade}")
        d_self = ml.pairwise_distances(xs, distance=distance, backend=backend)
        _assert_scaled(d_self, ml.pairwise_distances(x, distance=distance, backend=backend), power, e, dtype, "self")


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paired_distances_are_homogeneous_or_refused(dtype, distance):
    rng = np.random.default_rng(1)
    x1, x2 = _rows(rng, dtype), _rows(rng, dtype)
    d0 = ml.paired_distances(x1, x2, distance=distance)
    power = _expected_power(distance)
    for decade in DECADES[dtype]:
        e = _exponent(decade)
        a, b = _scaled(x1, e), _scaled(x2, e)
        if not np.all(np.isfinite(a)) or not (np.finfo(dtype).tiny <= np.max(np.abs(a)) * 0.01):
            continue
        if not _representable(d0, power, e, dtype):
            if _times_power(float(np.max(d0)), power * e) > float(np.finfo(dtype).max):
                with pytest.raises(ValueError, match=r"^x1 has rows of norm"):
                    ml.paired_distances(a, b, distance=distance)
            continue
        _assert_scaled(ml.paired_distances(a, b, distance=distance), d0, power, e, dtype, f"paired at 1e{decade}")


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_similarities_are_homogeneous_or_refused(dtype, similarity):
    """Dot products scale by 2^2e (and underflow honestly: a product below the dtype's range is not promised);
    cosine similarities do not change, whatever the rows' size: a 1e-30 row is a direction, not a zero row."""
    rng = np.random.default_rng(2)
    x, y = _rows(rng, dtype), _rows(rng, dtype, (6, 5))
    s0 = ml.pairwise_similarities(x, y, similarity=similarity)
    power = 2 if similarity == "dot" else 0
    for decade in DECADES[dtype]:
        e = _exponent(decade)
        xs, ys = _scaled(x, e), _scaled(y, e)
        if not np.all(np.isfinite(xs)) or not (np.finfo(dtype).tiny <= np.max(np.abs(xs)) * 0.01):
            continue
        if not _representable(s0, power, e, dtype):
            if _times_power(float(np.max(np.abs(s0))), power * e) > float(np.finfo(dtype).max):
                with pytest.raises(ValueError, match=r"^x has rows of norm"):
                    ml.pairwise_similarities(xs, ys, similarity=similarity)
            continue
        s = ml.pairwise_similarities(xs, ys, similarity=similarity)
        _assert_scaled(s, s0, power, e, dtype, f"similarities at 1e{decade}")


# ---------------------------------------------------------------------------------------------------------------
# Every registered loss with embeddings, float32 across the promised range, against float64 on the same rows.

EMBEDDING_CASES = [case for case in REGISTRY if EMBEDDINGS in case.arg_kinds]
ROWS = (EMBEDDINGS, CENTERS)  # rows of the same feature space: scaled together
FLOAT32_DECADES = [-35, -30, -22, -17, -10, 10, 18, 20, 30]


def _call(case, arrays):
    value, grads = case(*arrays)
    return value, grads if isinstance(grads, tuple) else (grads,)


def _distance(case):
    """The case's distance: its hyper-parameter, else the loss's default."""
    if "distance" in case.hyper:
        return case.hyper["distance"]
    loss = ml.triplet_center_loss if case.id.startswith("triplet_center") else case.loss  # wrapped in the registry
    parameter = inspect.signature(loss).parameters.get("distance")
    return None if parameter is None else parameter.default


def _squares(case):
    """Whether the case's loss is built on squared distances or dot products (degree 2 in the rows)."""
    dot = case.hyper.get("similarity") == "dot"
    return dot or _distance(case) in ("sqeuclidean", "dot") or case.id.startswith(("npair", "warp"))


def _promised_decades(case):
    """The float32 decades the README promises for this case: rows whose squared distances or dot products are
    normal float32 numbers (1e-17 .. 1e18) for losses of degree 2, 1e-35 .. 1e18 for the others; the lifted loss
    on squared distances squares them again ([J]₊² with J ~ D): its gradient grows as the rows' cube, so it ends at
    1e10 (at 1e18 the gradient is ~1e55, refused by name)."""
    if case.id.startswith("lifted") and _distance(case) == "sqeuclidean":
        return (-17, 10)
    return (-17, 18) if _squares(case) else (-35, 18)


@pytest.mark.parametrize("case", EMBEDDING_CASES, ids=[case.id for case in EMBEDDING_CASES])
def test_float32_losses_hold_across_the_promised_range(case):
    """With the embeddings' (and centres') entries near 10^k, the float32 value and gradients equal the float64
    ones on the same rows (relative to their largest entry) inside the promised range; above it, they are still
    equal or a ValueError says the results are not representable; below it (losses of degree 2 only, whose
    squared distances round to 0 there), finite; never NaN or Inf."""
    rng = np.random.default_rng(3)
    base = case.make_inputs(rng, np.float32)
    low, high = _promised_decades(case)
    for decade in FLOAT32_DECADES:
        e = _exponent(decade)
        arrays = [_scaled(a, e) if kind in ROWS else a for a, kind in zip(base, case.arg_kinds, strict=True)]
        wide = [a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays]
        where = f"{case.id} at 1e{decade}"
        value64, grads64 = _call(case, wide)
        try:
            value, grads = _call(case, arrays)
        except ValueError as error:
            assert not low <= decade <= high, f"{where}: refused inside the promised range: {error}"
            assert "not representable" in str(error), str(error)
            continue
        assert math.isfinite(value), f"{where}: value {value}"
        if decade < low:  # squared distances or dot products below float32's normal range round to 0: finite only
            assert all(np.all(np.isfinite(grad)) for grad in grads), f"{where}: gradient not finite"
            continue
        assert value == pytest.approx(value64, rel=2e-3, abs=1e-3 * abs(value64) + 1e-30), where
        if case.hyper.get("eps", 1e-6 if case.id.startswith("triplet_margin") else 0) and decade < -10:
            continue  # u = a − p + ε rounds to ε in float32: the gradient cancels by the definition, not by range
        for grad, grad64 in zip(grads, grads64, strict=True):
            assert grad.dtype == np.float32
            assert np.all(np.isfinite(grad)), f"{where}: gradient not finite"
            scale = float(np.max(np.abs(grad64)))
            if not low <= decade <= high and scale < 1e3 * np.finfo(np.float32).tiny:
                continue  # the true gradient is below float32's normal range: only its finiteness is promised
            assert np.allclose(grad, grad64, rtol=2e-3, atol=2e-3 * scale), f"{where}: gradient"
            assert (scale == 0) == (float(np.max(np.abs(grad))) == 0), f"{where}: a silent zero gradient"


# ---------------------------------------------------------------------------------------------------------------
# The triplet and contrastive losses at the ends of float64 (and float32): homogeneity with the margins scaled.

HOMOGENEOUS = {
    "triplet-all": lambda x, lab, m: ml.triplet_loss(x, lab, mining="all", margin=m),
    "triplet-hard": lambda x, lab, m: ml.triplet_loss(x, lab, mining="hard", margin=m),
    "triplet-semihard": lambda x, lab, m: ml.triplet_loss(x, lab, mining="semihard", margin=m),
    "contrastive-linear": lambda x, lab, m: ml.contrastive_loss(x, lab, margin=m, form="linear"),
    "triplet_margin": lambda x, lab, m: ml.triplet_margin_loss(x[0::3], x[1::3], x[2::3], margin=m, eps=0.0),
}


@pytest.mark.parametrize("name", list(HOMOGENEOUS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hinge_losses_scale_with_their_rows_and_margin(dtype, name):
    """L(2^e x; 2^e m) = 2^e L(x; m) and the same gradient, from the bottom of the promised range to its top
    (the issue's measurements: inf, NaN or 0.0 at 1e20 in float32, a zero gradient below 1e-21)."""
    loss = HOMOGENEOUS[name]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 6)).astype(dtype)
    labels = np.repeat(np.arange(4), 3)
    low, high = PROMISED[dtype]
    for decade in [low, low // 2, -20, 20, high] if dtype == np.float64 else [low, -22, -20, 10, 18, 20, 30]:
        e = _exponent(decade)
        margin = 0.5 if math.ldexp(0.5, e) <= 1e18 else 0.0  # the margins refused above 1e18: then margin-free
        value0, grad0 = loss(x, labels, margin)
        grad0 = grad0[0] if isinstance(grad0, tuple) else grad0
        assert value0 > 0
        value, grad = loss(_scaled(x, e), labels, math.ldexp(margin, e))
        grad = grad[0] if isinstance(grad, tuple) else grad
        where = f"{name} at 1e{decade}"
        assert value == pytest.approx(math.ldexp(value0, e), rel=1e-4 if dtype == np.float32 else 1e-10), where
        assert np.all(np.isfinite(grad)), where
        assert np.allclose(grad, grad0, rtol=1e-3, atol=1e-4 * float(np.max(np.abs(grad0)))), where


def test_unrepresentable_squared_distances_are_refused_naming_the_argument():
    """float32 rows of norm ~1e20: their squared distances (~1e40) exceed float32; refused, naming embeddings."""
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32) * np.float32(1e20)
    labels = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"^embeddings has rows of norm .* float32"):
        ml.triplet_loss(x, labels, distance="sqeuclidean")
    with pytest.raises(ValueError, match=r"^x has rows of norm"):
        ml.pairwise_distances(x, distance="sqeuclidean")


@pytest.mark.parametrize("case", EMBEDDING_CASES, ids=[case.id for case in EMBEDDING_CASES])
def test_float64_losses_beyond_the_promised_range_are_finite_or_refused(case):
    """float64 rows from 1e-320 to 1e307 (past the promised 1e-300 .. 1e150 at both ends): every registered loss
    returns a finite value and finite gradients, or a ValueError saying what is not representable — never Inf or
    NaN (the Hadsell contrastive loss, ½d², returned inf at 1e160)."""
    rng = np.random.default_rng(6)
    base = case.make_inputs(rng, np.float64)
    for decade in DECADES[np.float64]:
        e = _exponent(decade)
        arrays = [_scaled(a, e) if kind in ROWS else a for a, kind in zip(base, case.arg_kinds, strict=True)]
        where = f"{case.id} at 1e{decade}"
        try:
            value, grads = _call(case, arrays)
        except ValueError as error:
            assert "not representable" in str(error), f"{where}: {error}"
            continue
        assert math.isfinite(value), f"{where}: value {value}"
        assert all(np.all(np.isfinite(grad)) for grad in grads), f"{where}: gradient not finite"


def test_a_loss_value_past_float64_is_refused_naming_the_argument():
    """½d² of float64 rows near 1e160 is ~1e320, past float64's top: refused by name, not returned as inf."""
    x = np.random.default_rng(7).standard_normal((6, 4)) * 1e160
    labels = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"^embeddings has entries up to .*: the loss value exceeds float64"):
        ml.contrastive_loss(x, labels)
    with pytest.raises(ValueError, match=r"^x1 has entries up to"):
        ml.contrastive_pair_loss(x[:3], x[3:] / 1e10, np.array([0, 1, 0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_miners_pick_the_same_triplets_at_every_promised_size(dtype):
    """Mining reads only the order of distances, which scaling the rows by 2^e keeps: batch_triplets, mine_dataset
    and mine_triplets (margin scaled alike) pick the same indices from the bottom of the promised range to its top
    (the issue: below ~1e-21 in float32 the distances rounded to 0 and ties picked the triplets)."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 5)).astype(dtype)
    labels = np.repeat(np.arange(4), 4)
    low, high = PROMISED[dtype]

    def mined(rows, margin):
        return (
            ml.batch_triplets(rows, labels, positive="hardest", negative="semihard"),
            ml.mine_dataset(rows, labels, negative="hardest"),
            ml.mine_triplets(rows, labels, kind="semihard", margin=margin),
        )

    for decade in [low, low // 2, -20, 20, high]:
        e = _exponent(decade)
        margin = 0.5 if math.ldexp(0.5, e) <= 1e18 else 0.0  # the margins refused above 1e18: then margin-free
        expected = mined(x, margin)
        for got, want in zip(mined(_scaled(x, e), math.ldexp(margin, e)), expected, strict=True):
            for got_part, want_part in zip(got, want, strict=True):
                np.testing.assert_array_equal(got_part, want_part, err_msg=f"at 1e{decade}")
