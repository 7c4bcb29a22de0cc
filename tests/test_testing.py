"""metricloss.testing: the gradient checker must pass right gradients and catch wrong ones."""

import numpy as np
import pytest

from metricloss.testing import assert_close, check_grad


def quartic(x):
    """Σ x⁴/4 with its exact gradient x³."""
    return float(np.sum(x**4) / 4), x**3


def test_a_right_gradient_passes_entry_by_entry_and_by_directions():
    x = np.random.default_rng(0).standard_normal((5, 4))
    assert check_grad(quartic, x) < 1e-8
    big = np.random.default_rng(1).standard_normal((60, 20))
    assert check_grad(quartic, big) < 1e-8  # 1200 entries > max_full_size: directional


@pytest.mark.parametrize(
    ("max_full_size", "report"),
    [
        (600, r"worst relative error 3\.333e-01 > rtol 1\.0e-06 \(12 of 12 checks fail\).*\narray  entry"),
        (0, r"worst relative error [0-9.]+e-01 > rtol 1\.0e-06 \(16 of 16 checks fail\).*\ndirection"),
    ],
)
def test_a_gradient_off_by_a_factor_fails_with_a_report(max_full_size, report):
    """Entry by entry, the largest entry is off by exactly 1/3 of the largest magnitude."""
    x = np.random.default_rng(2).standard_normal((4, 3))
    with pytest.raises(AssertionError, match="gradient check failed: " + report):
        check_grad(lambda a: (quartic(a)[0], 2 / 3 * quartic(a)[1]), x, max_full_size=max_full_size)


def test_a_single_wrong_entry_is_named_first_in_the_report():
    x = np.random.default_rng(3).standard_normal((3, 3))

    def one_entry_wrong(a):
        value, grad = quartic(a)
        grad = grad.copy()
        grad[2, 1] += 0.5
        return value, grad

    with pytest.raises(AssertionError, match=r"\(1 of 9 checks fail\).*\n.*\n +0  \(2, 1\)"):
        check_grad(one_entry_wrong, x)


def test_several_inputs_take_a_tuple_of_gradients():
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    assert check_grad(lambda u, v: (float(u @ v), (v, u)), a, b) < 1e-9
    with pytest.raises(AssertionError, match="returned 1 gradients for 2 input arrays"):
        check_grad(lambda u, v: (float(u @ v), (v,)), a, b)


def test_shape_and_finiteness_problems_are_reported():
    x = np.ones((2, 2))
    with pytest.raises(AssertionError, match=r"gradient 0 has shape \(4,\); its input has shape \(2, 2\)"):
        check_grad(lambda a: (0.0, np.zeros(4)), x)
    with pytest.raises(AssertionError, match="non-finite value"):
        check_grad(lambda a: (np.nan, a), x)
    with pytest.raises(AssertionError, match="non-finite gradient"):
        check_grad(lambda a: (0.0, a * np.inf), x)


def test_a_flat_function_with_a_zero_gradient_passes():
    assert check_grad(lambda a: (1.0, np.zeros_like(a)), np.ones((3, 2))) == 0.0


def test_inputs_are_converted_to_float64_and_not_modified():
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    seen = []
    check_grad(lambda a: (seen.append(a.dtype), quartic(a))[1], x)
    assert set(seen) == {np.dtype(np.float64)}
    np.testing.assert_array_equal(x, [[1.0, 2.0]])


def test_assert_close_uses_the_dtype_tolerance_and_the_array_scale():
    assert_close(np.float32([1.0, 2.0]), np.array([1.00005, 2.0]))  # 5e-5 < 1e-4 (float32)
    with pytest.raises(AssertionError):
        assert_close(np.array([1.0, 2.0]), np.array([1.00005, 2.0]))  # > 1e-9 (float64)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.ones(2), np.ones(3))
