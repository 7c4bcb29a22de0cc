"""The TensorFlow adapter: every registered loss called with native tensors (float targets, int64 labels, bool
relevance) through tf.test.compute_gradient (float64) and against metricloss, eagerly and in a tf.function,
tf.function equal to eager, float32 in and out, and errors raised in the caller's frame."""

import numpy as np
import pytest
import tensorflow as tf
from registry import BINARY, DIFFERENTIABLE, LABELS, REGISTRY, REGISTRY_IDS, RELEVANCE, SIGNS
from support import MINED_PER_BATCH_IDS, mined_per_batch

import metricloss as ml
from metricloss.adapters.tensorflow import wrap

cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)


def native(case, arrays, targets_as="float"):
    """The case's arrays as a TensorFlow user gives them: floats for features and scores, int64 labels, bool
    relevance, and targets (y in {−1, 1} or {0, 1}) as float tensors of the features' dtype, or as int64 with
    ``targets_as="int"``."""
    floating = next(a.dtype for a, kind in zip(arrays, case.arg_kinds, strict=True) if kind in DIFFERENTIABLE)
    out = []
    for a, kind in zip(arrays, case.arg_kinds, strict=True):
        if kind in DIFFERENTIABLE or (kind in (SIGNS, BINARY) and targets_as == "float"):
            out.append(tf.constant(a, dtype=floating))
        elif kind == RELEVANCE:
            out.append(tf.constant(a, dtype=tf.bool))
        else:
            assert kind in (LABELS, SIGNS, BINARY)
            out.append(tf.constant(a, dtype=tf.int64))
    return out


def split(case, arrays):
    """The wrapped loss as a function of the case's differentiable arrays (the others native and held fixed), and
    those arrays."""
    return case.of_differentiable(wrap(case.loss, **case.hyper), native(case, arrays), tf.convert_to_tensor)


@cases
def test_compute_gradient_in_float64(case):
    if case.frozen_value is not None:
        pytest.skip(
            "its gradient holds weights constant (circle's detached α), so it is not the value's: the contract "
            "differences the frozen-weight objective instead"
        )
    of_floats, floats = split(case, case.make_inputs(np.random.default_rng(0), np.float64))
    theoretical, numerical = tf.test.compute_gradient(of_floats, floats, delta=1e-6)
    for analytic, differences in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(analytic, differences, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(analytic).max()))


@cases
@pytest.mark.parametrize("targets_as", ["float", "int"])
@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
def test_native_arguments_give_metricloss_values_and_gradients_in_float32(case, targets_as, in_graph):
    """Eagerly and in a tf.function, with targets as float (or int64) tensors: the value and the gradients are
    metricloss's own, and a float target, watched too, gets no gradient (None)."""
    arrays = case.make_inputs(np.random.default_rng(1), np.float32)
    inputs = native(case, arrays, targets_as)
    loss = wrap(case.loss, **case.hyper)

    def value_and_grads(*tensors):
        with tf.GradientTape() as tape:
            floats = [t for t in tensors if t.dtype.is_floating]
            tape.watch(floats)
            value = loss(*tensors)
        return value, tape.gradient(value, floats)

    value, grads = (tf.function(value_and_grads) if in_graph else value_and_grads)(*inputs)
    expected_value, expected_grads = case(*arrays)
    expected_grads = iter(expected_grads if isinstance(expected_grads, tuple) else (expected_grads,))
    assert value.dtype == tf.float32 and float(value) == pytest.approx(expected_value, rel=1e-6)
    kinds = [kind for kind, t in zip(case.arg_kinds, inputs, strict=True) if t.dtype.is_floating]
    for kind, got in zip(kinds, grads, strict=True):
        if kind in DIFFERENTIABLE:
            assert got.dtype == tf.float32
            np.testing.assert_array_equal(got.numpy(), next(expected_grads))
        else:
            assert got is None, f"{kind} got a gradient"
    assert next(expected_grads, None) is None


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
    with pytest.raises(
        TypeError, match=r"triplet_loss\(\) got an unexpected keyword argument 'marign'; did you mean margin=\?"
    ):
        wrap(ml.triplet_loss, marign=1.0)
    loss = wrap(ml.triplet_loss)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(3,\)"):
        loss(tf.zeros((4, 2)), tf.constant([0, 0, 1]))
    # a hyper-parameter given to the wrapped function instead of to wrap: named, with the fix
    with pytest.raises(
        TypeError, match=r"symmetric=True is a hyper-parameter.*wrap\(multiple_negatives_ranking_loss, symmetric=True\)"
    ):
        wrap(ml.multiple_negatives_ranking_loss)(tf.zeros((4, 2)), tf.ones((4, 2)), symmetric=True)


def test_a_float_target_with_shapes_unknown_until_it_runs():
    """A tf.function traced with unknown batch sizes cannot run the stand-ins: it still gives metricloss's value and
    gradients (the float target's own gradient is then a zero, as its role is learned only when it runs)."""
    spec = tf.TensorSpec([None], tf.float64)
    loss = wrap(ml.margin_ranking_loss, margin=0.1)

    @tf.function(input_signature=[spec, spec, spec])
    def value_and_grads(x1, x2, y):
        with tf.GradientTape() as tape:
            tape.watch([x1, x2])
            value = loss(x1, x2, y)
        return value, tape.gradient(value, [x1, x2])

    x1, x2, y = np.array([0.3, -0.2, 1.0, 0.0]), np.array([0.1, 0.4, -0.5, 0.2]), np.array([1.0, -1.0, 1.0, -1.0])
    value, grads = value_and_grads(tf.constant(x1), tf.constant(x2), tf.constant(y))
    expected_value, expected_grads = ml.margin_ranking_loss(x1, x2, y, margin=0.1)
    assert float(value) == expected_value
    for got, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_array_equal(got.numpy(), expected)
    with pytest.raises(ValueError, match=r"y must contain only the values \(-1, 1\)"):
        wrap(ml.margin_ranking_loss)(tf.constant(x1), tf.constant(x2), tf.constant([1.0, 0.5, 1.0, 1.0], tf.float64))


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("at", range(2), ids=MINED_PER_BATCH_IDS)
def test_index_arrays_mined_for_each_batch_pass_as_a_tuple_keyword(at, in_graph):
    """triplets=(a, p, n) as a tuple of tensors at each call, eagerly and in a tf.function (where the loss's checks
    run on stand-ins, the index tensors empty): the value and gradient are metricloss's own."""
    loss_fn, hyper, x, labels, triplets = mined_per_batch(np.float32)[at]
    loss = wrap(loss_fn, **hyper)

    def value_and_grad(embeddings, labels, triplets):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(embeddings, labels, triplets=triplets)
        return value, tape.gradient(value, embeddings)

    run = tf.function(value_and_grad) if in_graph else value_and_grad
    value, grad = run(tf.constant(x), tf.constant(labels), tuple(tf.constant(t) for t in triplets))
    expected_value, expected_grad = loss_fn(x, labels, triplets=triplets, **hyper)
    assert float(value) == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_array_equal(grad.numpy(), expected_grad)


def test_a_learnable_beta_with_references_gets_each_gradient():
    """margin_loss with a learnable β and references returns its gradients in signature order (embeddings, β,
    references), the order the adapter hands them out in; before issue 22 it returned β last and the call raised
    "margin_loss returned gradients of shapes [(4, 8), (3, 8), (1,)]"."""
    rng = np.random.default_rng(5)
    x, refs, beta = rng.standard_normal((4, 8)), rng.standard_normal((3, 8)), np.array([1.0])
    labels, ref_labels = np.array([0, 0, 1, 1]), np.array([0, 1, 1])
    expected_value, expected_grads = ml.margin_loss(
        x, labels, beta=beta, margin=0.1, nu=0.1, ref_embeddings=refs, ref_labels=ref_labels
    )
    loss = wrap(ml.margin_loss, margin=0.1, nu=0.1)
    floats = [tf.Variable(a) for a in (x, beta, refs)]
    with tf.GradientTape() as tape:
        value = loss(
            floats[0], tf.constant(labels), beta=floats[1], ref_embeddings=floats[2], ref_labels=tf.constant(ref_labels)
        )
    assert float(value) == expected_value
    for got, expected in zip(tape.gradient(value, floats), expected_grads, strict=True):
        np.testing.assert_array_equal(got.numpy(), expected)
