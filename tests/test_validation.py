"""Error messages name the argument, say what was expected and what was got (the contract covers every loss;
these pin the exact wording users see, and the inputs that must be accepted)."""

import numpy as np
import pytest

import metricloss as ml


def test_labels_of_the_wrong_shape_say_both_shapes_and_the_fix():
    x = np.zeros((32, 4))
    with pytest.raises(
        ValueError,
        match=r"^labels must have shape \(32,\) to match embeddings; got \(32, 1\): "
        r"flatten it with labels.ravel\(\)$",
    ):
        ml.contrastive_loss(x, np.zeros((32, 1), dtype=int))


def test_non_finite_input_says_where():
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"embeddings must be finite; got nan at index \(2, 1\) \(1 non-finite"):
        ml.contrastive_loss(x, np.arange(4))


def test_integer_embeddings_say_how_to_convert():
    with pytest.raises(
        TypeError,
        match=r"embeddings must be a float32 or float64 array; got dtype int64: .*"
        r"astype\(np.float64\)",
    ):
        ml.contrastive_loss(np.zeros((4, 3), dtype=np.int64), np.arange(4))


def test_non_numeric_objects_are_type_errors():
    with pytest.raises(TypeError, match="embeddings must be a float32 or float64 array; got dtype object"):
        ml.contrastive_loss([[object()]], [0])
    with pytest.raises(TypeError, match="margin must be a real number; got str"):
        ml.contrastive_loss(np.zeros((2, 2)), [0, 1], margin="1")
    with pytest.raises(ValueError, match="margin must be finite; got nan"):
        ml.contrastive_loss(np.zeros((2, 2)), [0, 1], margin=float("nan"))


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match=r"embeddings must not be empty; got an array of shape \(0, 3\)"):
        ml.contrastive_loss(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_lists_and_python_numbers_are_accepted():
    _, grad = ml.contrastive_loss([[0.0, 0.0], [0.0, 0.5], [0.6, 0.0]], [0, 0, 1])
    assert isinstance(grad, np.ndarray) and grad.dtype == np.float64
    value_pairs, _ = ml.margin_ranking_loss([1.0, 2.0], [2.0, 1.0], [1, -1], margin=1)
    assert value_pairs == 2.0  # [−(1 − 2) + 1]₊ = 2 and [(2 − 1) + 1]₊ = 2


def test_margin_zero_is_legitimate():
    value, _ = ml.triplet_margin_loss(np.zeros((1, 2)), np.ones((1, 2)), np.ones((1, 2)), margin=0)
    assert value == 0.0


def test_boolean_targets_are_accepted_for_zero_one_targets():
    x = np.array([[0.0, 0.0]])
    assert ml.contrastive_pair_loss(x, x + 1, np.array([True]))[0] == pytest.approx(1.0, rel=1e-15)  # ½·(√2)²
