"""metricloss.testing: the gradient checker must pass right gradients, catch wrong ones and never say yes wrongly.

The families below hold check_grad to that: functions wrong in each way (non-finite beside the base point, wrong by
a constant factor, wrong in one coordinate, entry by entry and by directions, wrong only in float32) must fail;
right functions must pass, whatever scalar type their value comes in; every bad argument is refused by name.
"""

import numpy as np
import pytest

from metricloss.testing import assert_close, check_grad


def quartic(x):
    """Σ x⁴/4 with its exact gradient x³, computed in the input's dtype."""
    return float(np.sum(x**4) / 4), x**3


def with_grad(fun, change):
    """``fun`` with its gradient replaced by ``change(x, grad)``."""

    def changed(*arrays):
        value, grad = fun(*arrays)
        return value, change(*arrays, grad)

    return changed


def one_entry_wrong(index, delta):
    """quartic with ``delta`` added to one entry of its gradient."""

    def add(x, grad):
        grad = grad.copy()
        grad[index] += delta
        return grad

    return with_grad(quartic, add)


ENTRYWISE, DIRECTIONAL = {"max_full_size": 600}, {"max_full_size": 0}
MODES = pytest.mark.parametrize("mode", [ENTRYWISE, DIRECTIONAL], ids=["entrywise", "directional"])


# --- right functions pass ---------------------------------------------------------------------------------------


def test_a_right_gradient_passes_entry_by_entry_and_by_directions():
    x = np.random.default_rng(0).standard_normal((5, 4))
    assert check_grad(quartic, x) < 1e-8
    big = np.random.default_rng(1).standard_normal((60, 20))
    assert check_grad(quartic, big) < 1e-8  # 1200 entries > max_full_size: directional


@pytest.mark.parametrize("seed", range(5))
def test_right_gradients_of_large_inputs_pass_the_directions_and_their_suspects(seed):
    """The suspect entries checked after the directions raise no false alarm: two arrays of 20 000 entries in all,
    a loss-like function (a mean) coupling them, several seeds."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((100, 100)), rng.standard_normal((100, 100))
    n = a.size

    def coupled(u, v):
        return float(np.sum(np.sin(u) * v + 0.5 * u * u) / n), ((np.cos(u) * v + u) / n, np.sin(u) / n)

    assert check_grad(coupled, a, b, seed=seed) < 1e-6


@pytest.mark.parametrize(
    "as_value",
    [float, np.float64, np.array, lambda v: np.array([v]), lambda v: np.array([[v]]), np.longdouble],
    ids=["float", "float64", "0-d array", "1-element array", "1x1 array", "longdouble"],
)
def test_the_value_may_be_any_real_scalar_or_one_element_array(as_value):
    """What a user's function returns as its value (a NumPy scalar, a tensor's .numpy(), np.array([v])) is taken
    as its number (before, a 1-element array raised a bare TypeError from float())."""
    x = np.random.default_rng(4).standard_normal((3, 2))
    assert check_grad(lambda a: (as_value(quartic(a)[0]), quartic(a)[1]), x) < 1e-8


@pytest.mark.parametrize("as_value", [int, np.int64, np.float32, lambda v: np.array([v], dtype=np.float32)])
def test_integer_and_float32_values_are_taken_too(as_value):
    """Values that are integers or float32 everywhere: a function constant on the integers' scale, gradient 0."""
    assert check_grad(lambda a: (as_value(3), np.zeros_like(a)), np.ones((2, 2))) == 0.0


@MODES
def test_a_flat_function_with_a_zero_gradient_passes(mode):
    assert check_grad(lambda a: (1.0, np.zeros_like(a)), np.ones((30, 30)), **mode) == 0.0


def test_several_inputs_take_a_tuple_of_gradients():
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    assert check_grad(lambda u, v: (float(u @ v), (v, u)), a, b) < 1e-9
    with pytest.raises(AssertionError, match="returned 1 gradients for 2 input arrays"):
        check_grad(lambda u, v: (float(u @ v), (v,)), a, b)


def test_a_scalar_input_and_integer_inputs_are_differentiated_in_float64():
    assert check_grad(lambda t: (float(t**3), 3 * t**2), np.float64(1.5)) < 1e-8
    assert check_grad(quartic, np.array([[1, -2], [3, 0]])) < 1e-8


def test_inputs_are_differentiated_in_float64_and_not_modified():
    """The finite differences see float64; a float32 input is also evaluated once as given (the float32 rung)."""
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    seen = []
    check_grad(lambda a: (seen.append(a.dtype), quartic(a))[1], x)
    assert seen.count(np.dtype(np.float32)) == 1
    assert set(seen) == {np.dtype(np.float64), np.dtype(np.float32)}
    np.testing.assert_array_equal(x, [[1.0, 2.0]])

    def modifies(a):
        value, grad = quartic(a)
        a[...] = 7.0  # a function that scribbles on its input must not move the checker's base point
        return value, grad

    x64 = np.array([0.5, -1.5])
    assert check_grad(modifies, x64) < 1e-8
    np.testing.assert_array_equal(x64, [0.5, -1.5])


# --- non-finite values beside the base point --------------------------------------------------------------------


def sqrt_edge(x):
    """Σ x⁴/4 + √(1 − x₀₀) at x₀₀ = 1: finite there, NaN one step above; the claimed gradient drops the root's
    (infinite) derivative. Central differences cannot check it, and the check must say so, not return NaN."""
    with np.errstate(invalid="ignore"):
        return quartic(x)[0] + float(np.sqrt(1.0 - x[0, 0])), quartic(x)[1]


def exp_edge(x):
    """Σ exp(x), right, at x₀₀ just below log(float64 max): finite there, +inf one step above."""
    with np.errstate(over="ignore"):
        return float(np.sum(np.exp(x))), np.exp(x)


@MODES
@pytest.mark.parametrize(
    ("fun", "value"), [(sqrt_edge, "nan"), (exp_edge, "inf")], ids=["nan beside x", "inf beside x"]
)
def test_a_function_non_finite_beside_the_base_point_fails_naming_the_evaluation(fun, value, mode):
    x = np.random.default_rng(5).uniform(-0.5, 0.5, size=(10, 10) if mode is ENTRYWISE else (30, 30))
    x[0, 0] = 1.0 if fun is sqrt_edge else 709.7827
    assert np.isfinite(fun(x)[0])
    where = r"array 0 entry \(0, 0\), x \+ step" if mode is ENTRYWISE else r"direction \d+, x [+-] step·v \(step"
    with pytest.raises(AssertionError, match=rf"fun returned a non-finite value {value} at {where}"):
        check_grad(fun, x, **mode)


def test_non_finite_values_and_gradients_at_the_base_point_and_bad_shapes_are_reported():
    x = np.ones((2, 2))
    with pytest.raises(AssertionError, match=r"gradient 0 has shape \(4,\); its input has shape \(2, 2\)"):
        check_grad(lambda a: (0.0, np.zeros(4)), x)
    with pytest.raises(AssertionError, match="non-finite value nan at the inputs"):
        check_grad(lambda a: (np.nan, a), x)
    with pytest.raises(AssertionError, match=r"non-finite gradient: gradient 0 is inf at entry \(0, 0\)"):
        check_grad(lambda a: (0.0, a * np.inf), x)


# --- wrong by a constant factor ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "report"),
    [
        (ENTRYWISE, r"worst relative error 3\.333e-01 > rtol 1\.0e-06 \(12 of 12 checks fail\).*\ncheck .*\narray 0"),
        (DIRECTIONAL, r"worst relative error [0-9.]+e-01 > rtol 1\.0e-06 \(\d+ of 28 checks fail\).*\ncheck "),
    ],
    ids=["entrywise", "directional"],
)
def test_a_gradient_off_by_a_factor_fails_with_a_report(mode, report):
    """Entry by entry, the largest entry is off by exactly 1/3 of the largest magnitude; by directions, 16
    directions and the 12 entries (all of them) as suspects."""
    x = np.random.default_rng(2).standard_normal((4, 3))
    with pytest.raises(AssertionError, match="gradient check failed: " + report):
        check_grad(with_grad(quartic, lambda a, g: 2 / 3 * g), x, **mode)


@pytest.mark.parametrize("factor", [1 + 2e-5, 1 - 1e-5, -1.0, 0.0])
def test_a_large_input_with_a_gradient_off_by_a_small_factor_fails(factor):
    """20 000 entries: the directions see a factor 1 + 2e-5 only as 2e-5/√20000 ≈ 1.4e-7 of ‖g‖ (they passed it);
    the suspects (the entries with the largest share of the residuals) see it whole."""
    x = np.random.default_rng(6).standard_normal((200, 100))
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_grad(with_grad(quartic, lambda a, g: factor * g), x)


# --- wrong in one coordinate ------------------------------------------------------------------------------------


def test_a_single_wrong_entry_is_named_first_in_the_report():
    x = np.random.default_rng(3).standard_normal((3, 3))
    with pytest.raises(AssertionError, match=r"\(1 of 9 checks fail\).*\n.*\narray 0 entry \(2, 1\) "):
        check_grad(one_entry_wrong((2, 1), 0.5), x)


@pytest.mark.parametrize("delta", [1e-3, 1e-2, -0.5])
@pytest.mark.parametrize("index", [(0, 0), (123, 45), (199, 99)])
def test_one_wrong_entry_of_a_large_input_is_found_by_directions_and_named(index, delta):
    """20 000 entries, the gradient wrong by δ in one entry (|g| is 1.5 on average): 16 random directions alone
    passed δ = 1e-2 (0.7 % of a typical entry); their residuals name the entry, which then fails by itself."""
    x = np.random.default_rng(7).standard_normal((200, 100))
    entry = rf"array 0 entry \({index[0]}, {index[1]}\) "
    with pytest.raises(AssertionError, match=rf"gradient check failed: .*\n.*\n{entry}"):
        check_grad(one_entry_wrong(index, delta), x)


@pytest.mark.parametrize("wrong_array", [0, 1])
def test_one_wrong_entry_in_either_of_two_inputs_is_found(wrong_array):
    """Each array's suspects are checked: an error in the smaller, second array is found as well."""
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((150, 100)), rng.standard_normal((50, 40))

    def both(u, v):
        gu, gv = u**3, np.cos(v)
        (gu if wrong_array == 0 else gv)[7, 3] += 1e-3
        return float(np.sum(u**4) / 4 + np.sum(np.sin(v))), (gu, gv)

    with pytest.raises(AssertionError, match=rf"\n.*\narray {wrong_array} entry \(7, 3\) "):
        check_grad(both, a, b)


@MODES
def test_a_gradient_missing_where_the_function_is_flat_elsewhere_fails(mode):
    """All the gradient's mass in one entry, and that entry missing: the claimed gradient is zero."""
    x = np.random.default_rng(9).standard_normal((30, 30))
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_grad(lambda a: (float(np.sin(a[4, 5])), np.zeros_like(a)), x, **mode)


# --- wrong only in float32 --------------------------------------------------------------------------------------


def right_only_in_float64(x):
    """quartic, but its float32 branch returns the gradient of Σ x⁴/4 + 1e-3·Σ x (a bug only float32 runs)."""
    value, grad = quartic(x)
    return value, (grad + 1e-3 if x.dtype == np.float32 else grad)


def test_a_function_right_in_float64_but_wrong_in_float32_fails_on_float32_inputs():
    x = np.random.default_rng(10).standard_normal((4, 3))
    assert check_grad(right_only_in_float64, x) < 1e-8  # float64 inputs: only float64 is checked, and it is right
    with pytest.raises(AssertionError, match="gradient 0 at the float32 inputs differs from its float64 evaluation"):
        check_grad(right_only_in_float64, x.astype(np.float32))
    with pytest.raises(AssertionError, match="gradient 1 at the float32 inputs"):  # mixed inputs: the float32 one
        check_grad(
            lambda u, v: (quartic(u)[0] + quartic(v)[0], (u**3, right_only_in_float64(v)[1])), x, x.astype(np.float32)
        )


def test_a_float32_function_is_judged_on_its_float64_evaluation_then_compared_in_float32():
    """A right function computed in the input's dtype passes on float32 inputs: the differences are taken in
    float64 (float32 ones could not check 1e-6), and its float32 result agrees with its float64 one to 1e-4."""
    x = np.random.default_rng(11).standard_normal((5, 4)).astype(np.float32)
    assert check_grad(quartic, x) < 1e-8
    # a float32 value that is off (a float32 branch dropping a term) fails the float32 rung too
    with pytest.raises(AssertionError, match="value at the float32 inputs"):
        check_grad(lambda a: (quartic(a)[0] * (1.01 if a.dtype == np.float32 else 1), quartic(a)[1]), x)


# --- bad arguments ----------------------------------------------------------------------------------------------

X = np.array([[0.3, -1.2], [0.7, 2.0]])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rtol": np.nan}, ValueError, "rtol must be finite; got nan"),
        ({"rtol": -1e-6}, ValueError, r"rtol must be > 0.0 and <= 0.1 .*; got -1e-06"),
        ({"rtol": 0.0}, ValueError, r"rtol must be > 0.0"),
        ({"rtol": 0.5}, ValueError, r"rtol must be > 0.0 and <= 0.1 \(a larger one passes gradients wrong"),
        ({"rtol": "1e-6"}, TypeError, "rtol must be a real number; got str"),
        ({"rtol": 1e-6j}, TypeError, "rtol must be a real number; got complex"),
        ({"rtol": True}, TypeError, "rtol must be a real number; got bool"),
        ({"atol": 0.0}, ValueError, r"atol must be > 0.0"),
        ({"atol": -1.0}, ValueError, r"atol must be > 0.0"),
        ({"atol": np.inf}, ValueError, "atol must be finite; got inf"),
        ({"atol": None}, TypeError, "atol must be a real number; got NoneType"),
        ({"eps": 0}, ValueError, r"eps must be >= 2.22\d*e-16 and <= 1.0 .*; got 0.0"),
        ({"eps": -1e-6}, ValueError, r"eps must be >= 2.22"),
        ({"eps": 1e-20}, ValueError, r"eps must be >= 2.22.* a smaller one does not move x\); got 1e-20"),
        ({"eps": 1e300}, ValueError, r"eps must be .*<= 1.0"),
        ({"eps": np.nan}, ValueError, "eps must be finite"),
        ({"max_full_size": -1}, ValueError, "max_full_size must be >= 0; got -1"),
        ({"max_full_size": 600.0}, TypeError, "max_full_size must be an integer; got float"),
        ({"n_directions": 0}, ValueError, "n_directions must be >= 1; got 0"),
        ({"n_directions": 2.5}, TypeError, "n_directions must be an integer; got float"),
        ({"seed": -1}, ValueError, "seed must be a seed >= 0; got -1"),
        ({"seed": "zero"}, TypeError, "seed must be a numpy.random.Generator, an int seed or None; got str"),
        ({"seed": 1.5}, TypeError, "seed must be a numpy.random.Generator, an int seed or None; got float"),
    ],
)
def test_a_bad_argument_is_refused_by_name(kwargs, error, message):
    """Each bad value is refused before anything is evaluated (before: rtol=nan passed a gradient off by a factor
    of 2, eps=0 divided by zero, n_directions=0 failed in a NumPy reduction, max_full_size=-1 ran directions)."""
    calls = []

    def wrong_by_two(a):
        calls.append(1)
        return quartic(a)[0], 2 * quartic(a)[1]

    with pytest.raises(error, match=message):
        check_grad(wrong_by_two, X, **kwargs)
    assert not calls


@pytest.mark.parametrize(
    ("arrays", "error", "message"),
    [
        ((), TypeError, "check_grad needs at least one array to differentiate"),
        ((np.array([1.0, np.nan]),), ValueError, r"arrays\[0\] must be finite; got nan at index \(1,\)"),
        ((X, np.array([[np.inf]])), ValueError, r"arrays\[1\] must be finite"),
        ((np.zeros((0, 3)),), ValueError, r"arrays\[0\] must not be empty"),
        ((X.astype(complex),), TypeError, r"arrays\[0\] must be a float32 or float64 array; got dtype complex128"),
        ((X.astype(np.float16),), TypeError, r"arrays\[0\] must be a float32 or float64 array; got dtype float16"),
        ((np.array(["a"]),), TypeError, r"arrays\[0\] must be a float32 or float64 array"),
    ],
)
def test_bad_inputs_are_refused_by_name(arrays, error, message):
    with pytest.raises(error, match=message):
        check_grad(lambda *a: (0.0, tuple(np.zeros_like(b) for b in a) if len(a) > 1 else np.zeros_like(a[0])), *arrays)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (lambda a: quartic(a)[0], r"fun must return a pair \(value, grad\); got float at the inputs"),
        (lambda a: (np.array([1.0, 2.0]), a), r"fun must return a scalar value .*; got an array of shape \(2,\)"),
        (lambda a: (np.ones((2, 2)), a), r"got an array of shape \(2, 2\) at the inputs: reduce it"),
        (lambda a: ("1.0", a), "fun must return a real number as its value; got str"),
        (lambda a: (1 + 2j, a), "fun must return a real number as its value; got complex"),
        (lambda a: (None, a), "fun must return a real number as its value; got NoneType"),
    ],
)
def test_a_value_that_is_no_real_scalar_is_refused(returned, message):
    with pytest.raises(TypeError, match=message):
        check_grad(returned, X)


def test_a_tiny_or_huge_step_can_no_longer_pass_a_zero_gradient():
    """Before, eps=1e-20 left x + step == x, so the difference of a zero gradient was 0 and x² passed with
    gradient 0; eps=1e300 divided a bounded function's difference by 1e300: tanh passed with gradient 0."""
    with pytest.raises(ValueError, match="eps must be"):
        check_grad(lambda a: (float(np.sum(a * a)), np.zeros_like(a)), np.ones(3), eps=1e-20)
    with pytest.raises(ValueError, match="eps must be"):
        check_grad(lambda a: (float(np.sum(np.tanh(a))), np.zeros_like(a)), np.ones(3), eps=1e300)
    with pytest.raises(AssertionError, match="gradient check failed"):  # the smallest eps accepted still moves x
        check_grad(lambda a: (float(np.sum(a * a)), np.zeros_like(a)), np.array([1.0, 3.0, 1e6]), eps=2**-52)


def test_a_generator_seeds_the_directions_and_the_same_seed_gives_the_same_result():
    big = np.random.default_rng(12).standard_normal((40, 40))
    fun = with_grad(quartic, lambda a, g: g * (1 + 1e-3))
    errors = []
    for seed in (3, np.random.default_rng(3), 3):
        with pytest.raises(AssertionError) as caught:
            check_grad(fun, big, seed=seed)
        errors.append(str(caught.value))
    assert errors[0] == errors[1] == errors[2]


# --- assert_close ----------------------------------------------------------------------------------------------


def test_assert_close_uses_the_dtype_tolerance_and_the_array_scale():
    assert_close(np.float32([1.0, 2.0]), np.array([1.00005, 2.0]))  # 5e-5 < 1e-4 (float32)
    with pytest.raises(AssertionError):
        assert_close(np.array([1.0, 2.0]), np.array([1.00005, 2.0]))  # > 1e-9 (float64)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.ones(2), np.ones(3))
