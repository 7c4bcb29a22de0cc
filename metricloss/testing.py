"""Checking gradients and comparing results: metricloss's own, and those of any other implementation.

:func:`check_grad` compares a claimed gradient with central finite differences of the value, in float64.
:func:`assert_close` compares two results with the relative tolerance ``TOLERANCES`` gives for their dtype. The
tolerances here are the one table of them: ``TOLERANCES`` for metricloss's tests comparing implementations
(backends, oracles, torch, PML, float32 runs), ``CONFORMANCE_TOLERANCES`` and ``CONFORMANCE_FLOORS`` for
:mod:`metricloss.conformance`'s report on another library's loss.
"""

import numpy as np

from metricloss._validation import check_count, check_float_array, check_rng, check_scalar

# Relative tolerances by dtype. TOLERANCES: two implementations of one formula on the tests' inputs, relative to the
# largest magnitude compared. CONFORMANCE_TOLERANCES: when a candidate "agrees" in metricloss.conformance's report,
# over its bank of cases that break losses (norms 1e-30..1e6, kinks, ties, float32) and candidates from other
# libraries: relative to the reference's value and to the largest entry of each of its gradients, those scales
# bounded below by CONFORMANCE_FLOORS, so that zeros compare to rounding noise.
TOLERANCES = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}
CONFORMANCE_TOLERANCES = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-3}
CONFORMANCE_FLOORS = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}

# The smallest relative step that moves every float64 input: x + eps·s != x for eps >= 2⁻⁵² and s >= max(1, |x|),
# which both steps satisfy (s = max(1, |x|) entry by entry, s = max(1, max |x| over all inputs) along directions).
_MIN_EPS = float(np.finfo(np.float64).eps)


def assert_close(actual, expected, *, rtol=None, err_msg=""):
    """Assert ``actual`` equals ``expected`` to ``rtol`` relative to the largest magnitude in ``expected``.

    Entries near zero are compared at the scale of the whole array, ``|a − e| <= rtol · max(|e|, 1e-30)``;
    ``rtol`` defaults to ``TOLERANCES`` for the coarser of the two dtypes.

    Parameters
    ----------
    actual : array-like
    expected : array-like
        Of the shape of ``actual``.
    rtol : float, optional
        The relative tolerance; default ``TOLERANCES`` of the coarser dtype (float64's for non-float arrays).
    err_msg : str, default ""
        Appended to the failure's message.

    Raises
    ------
    AssertionError
        If the shapes differ or an entry differs by more than ``rtol · max(max |expected|, 1e-30)``.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.testing import assert_close
    >>> assert_close(np.float32([1.0, 1e-9]), np.array([1.0, 0.0]))
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    if rtol is None:
        dtypes = [a.dtype if a.dtype in TOLERANCES else np.dtype(np.float64) for a in (actual, expected)]
        rtol = max(TOLERANCES[dtype] for dtype in dtypes)
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {actual.shape} != {expected.shape} {err_msg}")
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


def _as_gradient_tuple(grads, arrays):
    grads = (grads,) if len(arrays) == 1 and not isinstance(grads, tuple | list) else tuple(grads)
    if len(grads) != len(arrays):
        raise AssertionError(f"fun returned {len(grads)} gradients for {len(arrays)} input arrays")
    out = []
    for i, (grad, array) in enumerate(zip(grads, arrays, strict=True)):
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != array.shape:
            raise AssertionError(f"gradient {i} has shape {grad.shape}; its input has shape {array.shape}")
        out.append(grad)
    return out


def _evaluate(fun, arrays, where):
    """``fun(*arrays)`` as (value, grads), the value a finite float; ``where`` names this evaluation in reports.

    The value may be a number, a NumPy scalar or an array of one element (``np.array([3.0])``, a 0-d tensor's
    ``.numpy()``); a value of several elements is refused, and a non-finite one fails the check."""
    result = fun(*arrays)
    try:
        value, grads = result
    except (TypeError, ValueError):
        raise TypeError(f"fun must return a pair (value, grad); got {type(result).__name__} at {where}") from None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"fun must return a real number as its value; got {type(value).__name__} ({error})") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"fun must return a real number as its value; got {type(value).__name__} of dtype {array.dtype}"
        )
    if array.size != 1:
        raise TypeError(
            f"fun must return a scalar value (a number, or an array of one element); got an array of shape "
            f"{array.shape} at {where}: reduce it to the loss (.sum(), .mean())"
        )
    value = float(array.reshape(-1)[0])
    if not np.isfinite(value):
        raise AssertionError(
            f"fun returned a non-finite value {value} at {where}: central differences need fun finite on both sides "
            "of every input they shift, so fun is broken there (or the inputs sit at the edge of its domain)"
        )
    return value, grads


def _value(fun, arrays, where):
    return _evaluate(fun, arrays, where)[0]


def _entry_row(fun, arrays, grads, eps, i, index):
    """Central difference along entry ``index`` of array ``i``: (label, analytic, numeric).

    The step is ``eps · max(1, |x|)``; the denominator is the distance between the two shifted points as
    represented in float64, so rounding of ``x ± step`` does not bias the quotient."""
    x = arrays[i][index]
    step = eps * max(1.0, abs(x))
    values = []
    for side, shifted_x in (("+", x + step), ("-", x - step)):
        shifted = [a.copy() for a in arrays]
        shifted[i][index] = shifted_x
        where = f"array {i} entry {tuple(int(k) for k in index)}, x {side} step (x = {float(x)!r}, step {step:.3g})"
        values.append(_value(fun, shifted, where))
    label = f"array {i} entry {tuple(int(k) for k in index)}"
    return label, float(grads[i][index]), (values[0] - values[1]) / ((x + step) - (x - step))


def _full_jacobian_rows(fun, arrays, grads, eps):
    """Central differences along every coordinate: rows (label, analytic, numeric)."""
    return [
        _entry_row(fun, arrays, grads, eps, i, index)
        for i, array in enumerate(arrays)
        for index in np.ndindex(array.shape)
    ]


def _directional_rows(fun, arrays, grads, eps, n_directions, rng):
    """Central differences along random unit directions v of all inputs together: rows (label, ⟨g, v⟩, numeric),
    and for each array, the scores of its coordinates as suspects of the disagreement (see :func:`check_grad`)."""
    step = eps * max(1.0, max(float(np.abs(a).max()) for a in arrays))
    sizes = np.cumsum([0] + [a.size for a in arrays])
    g = np.concatenate([grad.ravel() for grad in grads])
    explained = np.zeros(g.size)  # Σ_k r_k v_k: the residuals' projection on each coordinate
    weight = np.zeros(g.size)  # Σ_k v_k²
    rows = []
    for k in range(n_directions):
        v = rng.standard_normal(g.size)
        v /= np.linalg.norm(v)
        parts = [v[start:stop].reshape(a.shape) for start, stop, a in zip(sizes[:-1], sizes[1:], arrays, strict=True)]
        plus = _value(
            fun,
            [a + step * p for a, p in zip(arrays, parts, strict=True)],
            f"direction {k}, x + step·v (step {step:.3g})",
        )
        minus = _value(
            fun,
            [a - step * p for a, p in zip(arrays, parts, strict=True)],
            f"direction {k}, x - step·v (step {step:.3g})",
        )
        analytic, numeric = float(g @ v), (plus - minus) / (2 * step)
        rows.append((f"direction {k}", analytic, numeric))
        explained += (analytic - numeric) * v
        weight += v * v
    # A gradient wrong in one coordinate j alone gives residuals r_k = δ·v_kj: coordinate j explains all of them,
    # (Σ_k r_k v_kj)² / Σ_k v_kj² = Σ_k r_k², and no other coordinate comes close for n_directions >= 8 or so.
    suspicion = explained**2 / weight
    return rows, [
        suspicion[start:stop].reshape(a.shape) for start, stop, a in zip(sizes[:-1], sizes[1:], arrays, strict=True)
    ]


def _input_array(value, name):
    """A differentiable input: a finite float array (integers converted to float64), named for the errors."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        array = value  # check_float_array says what is wrong with it
    else:
        if array.dtype.kind in "iu":
            array = array.astype(np.float64)
    return check_float_array(array, name)


def check_grad(fun, *arrays, rtol=1e-6, atol=1e-8, eps=1e-6, max_full_size=600, n_directions=16, seed=0):
    r"""Check a function's claimed gradient against central finite differences of its value, in float64.

    ``fun(*arrays)`` must return ``(value, grad)``: a real number (a NumPy scalar or an array of one element will
    do) and, for one input array, an array of its shape, or for several, a tuple with one gradient per array (as
    metricloss's losses do). Bind everything that is not differentiated (labels, hyper-parameters) with a
    ``lambda`` or ``functools.partial``. The arrays must be finite; integer arrays are converted to float64; the
    arrays passed are never modified.

    **Precision.** The finite differences are taken in float64: ``fun`` is evaluated at float64 copies of the
    arrays and at shifted copies of them, and the gradient it returns at the float64 copies is the one checked.
    Where an input is float32, ``fun`` is also evaluated once at the inputs as given, and its value and gradients
    there must equal those of the float64 evaluation at the same point to ``TOLERANCES[float32]`` (relative to
    each one's largest magnitude, as :func:`assert_close`): a function right in float64 but wrong in float32
    fails. float32 is never finite-differenced itself (its differences are too coarse to check anything to 1e-6).

    **Entry by entry**, if the inputs have at most ``max_full_size`` entries in all: every partial derivative,
    with the step ``h = eps · max(1, |x|)`` along entry x, ``n = (f(x + h) − f(x − h)) / ((x + h) − (x − h))``
    (the denominator as float64 represents the two points; 2 evaluations per entry) and the error
    ``|g − n| / max(‖g‖_∞, ‖n‖_∞, atol)`` over all entries of all arrays.

    **By directions**, for larger inputs: ``n_directions`` random unit directions v of all the inputs together
    (normalised Gaussian draws), one step ``h = eps · max(1, max |x|)`` (the largest magnitude of all inputs),
    ``n_v = (f(x + h·v) − f(x − h·v)) / 2h`` and the error ``|⟨g, v⟩ − n_v| / max(‖g‖_2, atol)``. A direction
    sees an error δ in one coordinate j alone only as ``δ·v_j``, with ``|v_j| ≈ 1/√N`` for N entries in all, so
    the directions alone miss a wrong coordinate until δ exceeds about ``rtol·√N·‖g‖_2`` (at N = 20 000,
    a few % of a typical entry). The directions' residuals ``r_k = ⟨g, v_k⟩ − n_{v_k}`` therefore name suspects: entry
    j's suspicion is ``(Σ_k r_k v_kj)² / Σ_k v_kj²``, the part of the residuals that one error at j alone
    explains (all of it when j alone is wrong), and the ``n_directions`` most suspicious entries of each array
    are checked entry by entry as above, with the error ``|g − n| / max(‖g‖_∞, largest |n| checked, atol)``.
    A gradient wrong in one entry is caught wherever its residuals stand above the differences' rounding noise:
    2·n_directions·(1 + number of arrays) evaluations at most, besides the one at x.

    **Resolution.** A difference quotient resolves a derivative to about ``2⁻⁵²·|f| / h`` (the rounding of the two
    values), never better, and it is compared as it is: nothing is discounted. A right gradient can therefore fail
    entry by entry where that exceeds ``rtol·‖g‖_∞``: a function whose value is large against each entry's
    derivative (a sum, rather than a mean, of 10⁴ terms or more). Check such a function scaled down, or with a
    larger ``eps``; raising ``rtol`` loosens every check instead.

    The check fails if the worst error exceeds ``rtol`` (or is NaN), or if ``fun`` returns a non-finite value at
    any point it is evaluated at (the report names the entry or direction and the side, x + step or x − step).

    Parameters
    ----------
    fun : callable
        ``fun(*arrays) -> (value, grad)``, grad a tuple for several arrays.
    *arrays : array-likes
        The inputs that are differentiated (float32, float64 or integer; integers are converted to float64).
    rtol : float in (0, 0.1]
        The largest acceptable relative error.
    atol : float > 0
        Floor of the errors' denominators, so that exactly zero gradients compare to finite-difference noise:
        gradients smaller than ``atol`` are in effect compared to ``rtol · atol`` absolutely.
    eps : float in [2⁻⁵², 1]
        Relative finite-difference step: ``eps · max(1, |x|)`` entry by entry, ``eps · max(1, max |x|)`` along
        directions (at least float64's resolution, so that every step moves its input).
    max_full_size : int >= 0
        Largest total input size checked entry by entry.
    n_directions : int >= 1
        Number of random directions for larger inputs, and of suspect entries then checked in each array.
    seed : int >= 0, numpy.random.Generator or None
        Seed of the directions' ``numpy.random.Generator`` (None: fresh entropy).

    Returns
    -------
    float
        The worst relative error found.

    Raises
    ------
    AssertionError
        If the worst relative error exceeds ``rtol``, with a report of the worst entries or directions; if
        ``fun`` returns a non-finite value or gradient, a gradient of the wrong shape, or (float32 inputs) a
        result that differs from its float64 one.
    TypeError, ValueError
        If an argument is invalid (named in the message), or ``fun``'s value is not a real number of one element.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.testing import check_grad
    >>> def half_square_norm(x):
    ...     return 0.5 * float(np.sum(x * x)), x
    >>> check_grad(half_square_norm, np.array([[1.0, -2.0], [0.5, 3.0]])) < 1e-9
    True
    """
    rtol = check_scalar(
        rtol, "rtol", low=0.0, low_inclusive=False, high=0.1, why=" (a larger one passes gradients wrong by 10 %)"
    )
    atol = check_scalar(atol, "atol", low=0.0, low_inclusive=False, why=" (the floor of the errors' denominators)")
    eps = check_scalar(eps, "eps", low=_MIN_EPS, high=1.0, why=" (a relative step; a smaller one does not move x)")
    max_full_size = check_count(max_full_size, "max_full_size", low=0)
    n_directions = check_count(n_directions, "n_directions", low=1)
    rng = check_rng(seed, "seed")
    if not arrays:
        raise TypeError("check_grad needs at least one array to differentiate")
    given = [_input_array(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    arrays = [a.astype(np.float64) for a in given]  # copies: fun never sees the caller's arrays

    value, grads = _evaluate(fun, [a.copy() for a in arrays], "the inputs")
    grads = _as_gradient_tuple(grads, arrays)
    for i, grad in enumerate(grads):
        if not np.isfinite(grad).all():
            bad = tuple(int(k) for k in np.argwhere(~np.isfinite(grad))[0])
            raise AssertionError(f"fun returned a non-finite gradient: gradient {i} is {grad[bad]} at entry {bad}")

    if sum(a.size for a in arrays) <= max_full_size:
        rows = _full_jacobian_rows(fun, arrays, grads, eps)
        scales = [max(max(abs(a) for _, a, _ in rows), max(abs(n) for _, _, n in rows), atol)] * len(rows)
    else:
        rows, suspicion = _directional_rows(fun, arrays, grads, eps, n_directions, rng)
        scales = [max(float(np.sqrt(sum(float(np.sum(g * g)) for g in grads))), atol)] * len(rows)
        entry_rows = [
            _entry_row(fun, arrays, grads, eps, i, np.unravel_index(flat, s.shape))
            for i, s in enumerate(suspicion)
            for flat in np.argsort(-s.ravel(), kind="stable")[:n_directions]
        ]
        largest = max(max(float(np.abs(g).max()) for g in grads), max(abs(n) for _, _, n in entry_rows), atol)
        rows += entry_rows
        scales += [largest] * len(entry_rows)

    errors = np.array([abs(a - n) for _, a, n in rows]) / np.array(scales)
    failed = ~(errors <= rtol)  # NaN fails
    worst = float(np.max(errors))
    if failed.any():
        order = np.argsort(np.where(np.isnan(errors), np.inf, errors), kind="stable")[::-1][:8]
        header = f"{'check':<24} {'analytic':>17} {'finite diff.':>17}  {'rel. error':>13}"
        report = "\n".join(
            f"{rows[k][0]:<24} {rows[k][1]:>17.10g} {rows[k][2]:>17.10g}  {errors[k]:>13.3e}" for k in order
        )
        raise AssertionError(
            f"gradient check failed: worst relative error {worst:.3e} > rtol {rtol:.1e} "
            f"({np.count_nonzero(failed)} of {errors.size} checks fail); worst first:\n{header}\n{report}"
        )

    if any(a.dtype == np.float32 for a in given):
        _check_float32_agrees(fun, given, value, grads)
    return worst


def _check_float32_agrees(fun, given, value, grads):
    """fun at the inputs as given (some float32) against its float64 evaluation at the same point."""
    tolerance = TOLERANCES[np.dtype(np.float32)]
    native_value, native_grads = _evaluate(fun, [a.copy() for a in given], "the inputs as given (float32)")
    native_grads = _as_gradient_tuple(native_grads, given)
    compared = [("value", native_value, value)] + [
        (f"gradient {i}", native, grad) for i, (native, grad) in enumerate(zip(native_grads, grads, strict=True))
    ]
    for what, native, expected in compared:
        try:
            assert_close(native, expected, rtol=tolerance)
        except AssertionError as error:
            raise AssertionError(
                f"fun's {what} at the float32 inputs differs from its float64 evaluation at the same point (whose "
                f"gradient passed central differences) by more than {tolerance:g} of its largest magnitude:{error}"
            ) from None
