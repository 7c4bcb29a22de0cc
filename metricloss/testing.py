"""Checking gradients and comparing results: metricloss's own, and those of any other implementation.

:func:`check_grad` compares a claimed gradient with central finite differences of the value, in float64.
:func:`assert_close` compares two results with the relative tolerance ``TOLERANCES`` gives for their dtype: the
one table that metricloss's tests use to compare implementations (backends, oracles, torch, PML, float32 runs).
"""

import numpy as np

TOLERANCES = {
    np.dtype(np.float64): 1e-9,
    np.dtype(np.float32): 1e-4,
}


def assert_close(actual, expected, *, rtol=None, err_msg=""):
    """Assert ``actual`` equals ``expected`` to ``rtol`` relative to the largest magnitude in ``expected``.

    Entries near zero are compared at the scale of the whole array, ``|a − e| <= rtol · max(|e|, 1e-30)``;
    ``rtol`` defaults to ``TOLERANCES`` for the coarser of the two dtypes.

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


def _value(fun, arrays):
    return float(fun(*arrays)[0])


def _full_jacobian_errors(fun, arrays, grads, eps):
    """Central differences along every coordinate: rows (array index, entry, analytic, numeric)."""
    rows = []
    for i, array in enumerate(arrays):
        for index in np.ndindex(array.shape):
            step = eps * max(1.0, abs(array[index]))
            shifted = [a.copy() for a in arrays]
            shifted[i][index] = array[index] + step
            plus = _value(fun, shifted)
            shifted[i][index] = array[index] - step
            minus = _value(fun, shifted)
            rows.append((i, index, grads[i][index], (plus - minus) / (2 * step)))
    return rows


def _directional_errors(fun, arrays, grads, eps, n_directions, seed):
    """Central differences along random unit directions v: rows (direction, analytic ⟨g, v⟩, numeric)."""
    rng = np.random.default_rng(seed)
    step = eps * max(1.0, max(float(np.abs(a).max()) for a in arrays))
    rows = []
    for k in range(n_directions):
        directions = [rng.standard_normal(a.shape) for a in arrays]
        norm = np.sqrt(sum(float(np.sum(v * v)) for v in directions))
        directions = [v / norm for v in directions]
        plus = _value(fun, [a + step * v for a, v in zip(arrays, directions, strict=True)])
        minus = _value(fun, [a - step * v for a, v in zip(arrays, directions, strict=True)])
        analytic = sum(float(np.sum(g * v)) for g, v in zip(grads, directions, strict=True))
        rows.append((k, analytic, (plus - minus) / (2 * step)))
    return rows


def check_grad(fun, *arrays, rtol=1e-6, atol=1e-8, eps=1e-6, max_full_size=600, n_directions=16, seed=0):
    r"""Check a function's claimed gradient against central finite differences in float64.

    ``fun(*arrays)`` must return ``(value, grad)``: a scalar and, for one input array, an array of its shape, or
    for several, a tuple with one gradient per array (as metricloss's losses do). Bind everything that is not
    differentiated (labels, hyper-parameters) with a ``lambda`` or ``functools.partial``. The arrays are
    converted to float64 first, and ``fun`` is evaluated at shifted copies of them.

    If the inputs have at most ``max_full_size`` entries in all, every partial derivative is checked
    (2 evaluations per entry), with error ``|g_k − n_k| / max(‖g‖_∞, ‖n‖_∞, atol)``; otherwise
    ``n_directions`` random unit directions v are, with error ``|⟨g, v⟩ − n_v| / max(‖g‖_2, atol)``.
    The step along each coordinate is ``eps · max(1, |x|)``.

    Parameters
    ----------
    fun : callable
    *arrays : array-likes, the inputs that are differentiated
    rtol : float
        The largest acceptable relative error.
    atol : float
        Floor of the error's denominator, so that exactly zero gradients compare to finite-difference noise.
    eps : float
        Relative finite-difference step.
    max_full_size : int
        Largest total input size checked entry by entry.
    n_directions : int
        Number of random directions for larger inputs.
    seed : int
        Seed of the directions' ``numpy.random.Generator``.

    Returns
    -------
    float
        The worst relative error found.

    Raises
    ------
    AssertionError
        If the worst relative error exceeds ``rtol``, with a report of the worst entries or directions.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.testing import check_grad
    >>> def half_square_norm(x):
    ...     return 0.5 * float(np.sum(x * x)), x
    >>> check_grad(half_square_norm, np.array([[1.0, -2.0], [0.5, 3.0]])) < 1e-9
    True
    """
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    if not arrays:
        raise TypeError("check_grad needs at least one array to differentiate")
    value, grads = fun(*arrays)
    if not np.isfinite(value):
        raise AssertionError(f"fun returned a non-finite value {value}")
    grads = _as_gradient_tuple(grads, arrays)
    if not all(np.isfinite(g).all() for g in grads):
        raise AssertionError("fun returned a non-finite gradient")

    if sum(a.size for a in arrays) <= max_full_size:
        rows = _full_jacobian_errors(fun, arrays, grads, eps)
        analytic = np.array([row[2] for row in rows])
        numeric = np.array([row[3] for row in rows])
        scale = max(np.abs(analytic).max(), np.abs(numeric).max(), atol)
        header = "array  entry            analytic           numeric     rel. error"
        lines = [f"{i:>5}  {index!s:<12} {a:>17.10g} {n:>17.10g}" for i, index, a, n in rows]
    else:
        rows = _directional_errors(fun, arrays, grads, eps, n_directions, seed)
        analytic = np.array([row[1] for row in rows])
        numeric = np.array([row[2] for row in rows])
        scale = max(np.sqrt(sum(float(np.sum(g * g)) for g in grads)), atol)
        header = "direction           ⟨g, v⟩      finite diff.     rel. error"
        lines = [f"{k:>9}  {a:>17.10g} {n:>17.10g}" for k, a, n in rows]

    errors = np.abs(analytic - numeric) / scale
    worst = float(errors.max())
    if worst > rtol:
        order = np.argsort(errors)[::-1][:8]
        report = "\n".join(f"{lines[k]}  {errors[k]:>13.3e}" for k in order)
        raise AssertionError(
            f"gradient check failed: worst relative error {worst:.3e} > rtol {rtol:.1e} "
            f"({np.count_nonzero(errors > rtol)} of {errors.size} checks fail); worst first:\n{header}\n{report}"
        )
    return worst
