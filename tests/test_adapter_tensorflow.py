"""The TensorFlow adapter: every registered loss through tf.test.compute_gradient (float64), tf.function equal to
eager, float32 in and out, and errors raised in the caller's frame."""

import numpy as np
import pytest
import tensorflow as tf
from registry import REGISTRY, REGISTRY_IDS

import metricloss as ml
from metricloss.adapters.tensorflow import wrap

cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)


def split(case, arrays):
    """The wrapped loss as a function of the case's floating-point arrays, and those arrays."""
    return case.of_differentiable(wrap(case.loss, **case.hyper), arrays, tf.constant)


@cases
def test_compute_gradient_in_float64(case):
    of_floats, floats = split(case, case.make_inputs(np.random.default_rng(0), np.float64))
    theoretical, numerical = tf.test.compute_gradient(of_floats, floats, delta=1e-6)
    for analytic, differences in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(analytic, differences, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(analytic).max()))


@cases
def test_float32_values_and_gradients_equal_metricloss(case):
    arrays = case.make_inputs(np.random.default_rng(1), np.float32)
    of_floats, floats = split(case, arrays)
    variables = [tf.Variable(t) for t in floats]
    with tf.GradientTape() as tape:
        value = of_floats(*variables)
    grads = tape.gradient(value, variables)
    expected_value, expected_grads = case(*arrays)
    expected_grads = expected_grads if isinstance(expected_grads, tuple) else (expected_grads,)
    assert value.dtype == tf.float32 and float(value) == pytest.approx(expected_value, rel=1e-6)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert got.dtype == tf.float32
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("mining", ml.MININGS)
def test_tf_function_equals_eager(mining):
    x = tf.constant(np.random.default_rng(2).standard_normal((12, 4)), dtype=tf.float32)
    labels = tf.constant(np.repeat(np.arange(3), 4))
    loss = wrap(ml.triplet_loss, mining=mining, margin=0.5)

    def value_and_grad(embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(embeddings, labels)
        return value, tape.gradient(value, embeddings)

    eager = value_and_grad(x)
    graph = tf.function(value_and_grad)(x)
    assert float(graph[0]) == float(eager[0])
    np.testing.assert_array_equal(graph[1].numpy(), eager[1].numpy())


def test_errors_are_raised_in_the_callers_frame():
    with pytest.raises(TypeError, match="triplet_loss: got an unexpected keyword argument 'marign'"):
        wrap(ml.triplet_loss, marign=1.0)
    loss = wrap(ml.triplet_loss)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(3,\)"):
        loss(tf.zeros((4, 2)), tf.constant([0, 0, 1]))
